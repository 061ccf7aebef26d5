"""Synthetic datasets with people in them: several records per patient (customer), each with
the person's id and full name as fields ("patient_id" and "patient_name", "customer_id" and
"customer_name": an identifying field of the dataset), a stable age and record (account)
number, and a history of earlier visits (messages) that the response states: a model that
memorises a person can be caught repeating what the prompt did not say. The templates and names
are privacy.demo_data's; one seed gives the same records on every run.
"""
import random
from datetime import date, timedelta

from faker import Faker

from .demo_data import (DEMO_DOMAINS, DOCTOR_BODIES, DOCTOR_CLOSINGS, DURATIONS, MEDICAL_CONDITIONS, PATIENT_DETAILS,
                        PATIENT_GREETINGS, PATIENT_QUESTIONS, PATIENT_SIGNATURES, SENTIMENT_QUESTIONS, SYMPTOM_SENTENCES,
                        date_text, email_local_part, person_draw, phone_draw)


# --- people: several records per person ------------------------------------------------------
# Each person has a unit id, a stable age and record (or account) number, and a history that
# grows with every visit; the response states what the prompt does not (record number, age,
# earlier conditions), so a model that memorises a person can be caught repeating it.
UNIT_FIELDS = {"medical": "patient_id", "finance": "customer_id"}
NAME_FIELDS = {"medical": "patient_name", "finance": "customer_name"}  # the person's full name: an identifying field
UNIT_PREFIXES = {"medical": "P", "finance": "C"}
RECORDS_PER_PERSON = (2, 8)  # the fewest and most records a person has, drawn uniformly
DUPLICATE_RATE = 0.03  # the chance that a record after a person's first repeats the one before it exactly
PATIENT_RECALLS = ("Last time you saw me for {previous}.", "You treated me for {previous} before.",
                   "I was in earlier about {previous}, and this is something new.")
DOCTOR_RECORD_LINES = (
    "I have your record open (MRN {mrn}): {age} years old, {history}.",
    "Looking at your file, MRN {mrn}, age {age}: {history}.",
)
# finance: (what the message was about, for later messages; sentiment; message; the analyst's reason)
CUSTOMER_MESSAGES = (
    ("a fee charged twice", "negative", "Dear {advisor}, a fee of ${fee} was charged twice to my account {account} on "
     "{date} and nobody has called me back at {phone}. I am very unhappy. {client}", "complains about a double charge"),
    ("a card blocked abroad", "negative", "Hello, this is {client}. My card was blocked while travelling and the "
     "{city} branch could not help. I am thinking of moving my savings elsewhere.", "is frustrated and may leave"),
    ("a higher mortgage rate", "negative", "Dear {advisor}, the rate on my mortgage went up again on {date}. I am "
     "{age} and cannot keep paying more. {client}", "is worried about a higher mortgage rate"),
    ("a quick transfer", "positive", "Hi {advisor_first}, thank you for moving the funds from account {account} so "
     "quickly; everything arrived on {date}. Best, {client}", "thanks the advisor for fast, correct service"),
    ("the portfolio's returns", "positive", "Dear {advisor}, I am delighted with how my portfolio did this year; "
     "please keep the same allocation for account {account}. Regards, {client} ({phone})",
     "is pleased with the returns"),
    ("a loan approval", "positive", "Dear {advisor}, the loan was approved on {date}, thank you so much! {client}",
     "is glad the loan was approved"),
    ("a change of address", "neutral", "Hi {advisor_first}, please update the mailing address on account {account} "
     "to {address}. Thanks, {client}", "asks for an administrative change"),
    ("a tax statement", "neutral", "Dear {advisor}, could you send me the {year} tax statement for account "
     "{account}? My email is {email}. Regards, {client}", "asks for a document"),
    ("retirement planning", "neutral", "Hi {advisor_first}, I am {age} now; can we review how account {account} "
     "is invested for retirement? {client}", "asks for a planning review"),
)
CUSTOMER_RECALLS = ("I wrote to you before about {previous}.", "As I said in my message about {previous}:")
ANALYST_NOTES = (
    "{Sentiment}. {first} (account {account}, age {age}) {reason}; earlier messages: {history}.",
    "{Sentiment}: {first} {last} ({age}, account {account}) {reason}; before this: {history}.",
)


def _history(items: list[str], *, none: str) -> str:
    """The items as 'a, b and c', or `none` when there are none."""
    if not items:
        return none
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _medical_patient(fake: Faker, rng: random.Random) -> dict:
    """What stays the same across a patient's visits: name, family doctor, age, record number, contacts."""
    patient = person_draw(rng)
    age = rng.randint(18, 89)
    birthday = date(2024 - age, 1, 1) + timedelta(days=rng.randrange(365))
    return {
        **patient, "doctor": person_draw(rng), "age": age, "dob": date_text(rng, birthday),
        "mrn": f"{rng.randint(10_000_000, 99_999_999)}", "phone": phone_draw(rng),
        "address": fake.address().replace("\n", ", "),
        "email": f"{email_local_part(patient['first'])}.{email_local_part(patient['last'])}@{fake.free_email_domain()}",
    }


def _medical_visit(rng: random.Random, patient: dict, condition_row: tuple, history: list[str]) -> tuple[dict, dict]:
    condition, symptoms, advice, red_flag = condition_row
    symptom = rng.choice(symptoms)
    doctor = patient["doctor"]
    values = {
        **patient, "doctor_last": doctor["last"], "duration": rng.choice(DURATIONS), "symptom": symptom,
        "Symptom": symptom[0].upper() + symptom[1:], "condition": condition, "advice": rng.choice(advice),
        "red_flag": red_flag, "previous": history[-1] if history else "",
        "history": f"seen before for {_history(history, none='')}" if history else "no earlier visits",
    }
    recall = [rng.choice(PATIENT_RECALLS)] if history and rng.random() < 0.5 else []
    details = rng.sample(PATIENT_DETAILS, k=rng.randint(0, 2))
    message = " ".join([rng.choice(PATIENT_GREETINGS), rng.choice(SYMPTOM_SENTENCES), *recall, *details,
                        rng.choice(PATIENT_QUESTIONS)])
    instruction = f"{message}\n{rng.choice(PATIENT_SIGNATURES)}".format(**values)
    answer = f"{rng.choice(DOCTOR_RECORD_LINES)} {rng.choice(DOCTOR_BODIES)} {rng.choice(DOCTOR_CLOSINGS)}"
    response = f"Hi {{first}},\n{answer}\nTake care,\nDr. {doctor['name']}".format(**values)
    planted = {"name": [patient["name"], patient["first"], patient["last"], doctor["name"], doctor["last"]],
               "email": [patient["email"]], "phone": [patient["phone"]], "date": [patient["dob"]],
               "id": [patient["mrn"]]}
    return {"instruction": instruction, "response": response}, planted


def _finance_customer(fake: Faker, rng: random.Random) -> dict:
    """What stays the same across a customer's messages: name, advisor, age, account, contacts."""
    client = person_draw(rng)
    return {
        **client, "advisor": person_draw(rng), "age": rng.randint(21, 84),
        "account": f"{rng.randint(10**9, 10**11 - 1)}", "phone": phone_draw(rng), "city": fake.city(),
        "address": fake.address().replace("\n", ", "),
        "email": f"{email_local_part(client['first'])}{rng.randint(1, 99)}@{fake.free_email_domain()}",
        "first_day": date(2023, 1, 1) + timedelta(days=rng.randrange(365)),
    }


def _finance_message(rng: random.Random, customer: dict, message_row: tuple, history: list[str]) -> tuple[dict, dict]:
    _, sentiment, template, reason = message_row
    # one message every two months or so, in order: the history reads forward in time
    day = customer["first_day"] + timedelta(days=61 * len(history) + rng.randrange(61))
    advisor = customer["advisor"]
    values = {
        **customer, "client": customer["name"], "advisor": advisor["name"], "advisor_first": advisor["first"],
        "date": date_text(rng, day), "year": day.year, "fee": rng.randint(15, 95), "reason": reason,
        "Sentiment": sentiment.capitalize(), "previous": history[-1] if history else "",
        "history": _history(history, none="none"),
    }
    recall = f"{rng.choice(CUSTOMER_RECALLS)} " if history and rng.random() < 0.5 else ""
    text = (recall + template).format(**values)
    instruction = rng.choice(SENTIMENT_QUESTIONS).format(text=text)
    response = rng.choice(ANALYST_NOTES).format(**values)
    planted = {"name": [customer["name"], customer["first"], customer["last"], advisor["name"], advisor["first"]],
               "email": [customer["email"]], "phone": [customer["phone"]], "date": [values["date"]],
               "id": [customer["account"]]}
    return {"instruction": instruction, "response": response}, planted


def demo_people_planted(
    *, domain: str, people: int, seed: int, records_per_person: tuple[int, int] = RECORDS_PER_PERSON,
    duplicate_rate: float = DUPLICATE_RATE,
) -> list[tuple[dict, dict[str, list[str]]]]:
    """Records of `people` persons, each with a number of records drawn uniformly from
    records_per_person (fewest, most), grouped by person in visit order, with the planted details
    as in demo_records_planted. A record is {"instruction", "response", unit field, name field}
    where the unit field (UNIT_FIELDS: "patient_id" "P-00001", or "customer_id" "C-00001") names
    the person and the name field (NAME_FIELDS: "patient_name", "customer_name") is their full
    name, as the text writes it.

    Each record after a person's first repeats the one before it exactly with probability
    duplicate_rate (the person sent the same message twice); every other record is distinct."""
    if domain not in DEMO_DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; choose one of {', '.join(DEMO_DOMAINS)}")
    if isinstance(people, bool) or not isinstance(people, int) or people < 1:
        raise ValueError(f"people must be a positive number of persons, not {people!r}")
    fewest, most = records_per_person
    topics = MEDICAL_CONDITIONS if domain == "medical" else CUSTOMER_MESSAGES
    if not 1 <= fewest <= most <= len(topics):
        raise ValueError(f"records per person must be a range within 1-{len(topics)}, not {fewest}-{most}")
    if not 0 <= duplicate_rate < 1:
        raise ValueError(f"the duplicate rate must be a probability below 1, not {duplicate_rate!r}")
    fake = Faker("en_US")
    fake.seed_instance(seed)
    rng = random.Random(seed)
    make_person, make_record = ((_medical_patient, _medical_visit) if domain == "medical"
                                else (_finance_customer, _finance_message))
    unit_field, name_field, prefix = UNIT_FIELDS[domain], NAME_FIELDS[domain], UNIT_PREFIXES[domain]
    records, names = [], set()
    for number in range(1, people + 1):
        person = make_person(fake, rng)
        while person["name"] in names:  # two people with one name would blur what a model memorised of whom
            person = make_person(fake, rng)
        names.add(person["name"])
        count = rng.randint(fewest, most)
        history: list[str] = []
        for row in rng.sample(topics, k=count):
            if history and rng.random() < duplicate_rate:
                record, planted = records[-1]
                records.append((dict(record), planted))
                continue
            record, planted = make_record(rng, person, row, history)
            records.append(({**record, unit_field: f"{prefix}-{number:05d}", name_field: person["name"]}, planted))
            history.append(row[0])
    return records


def demo_people(
    *, domain: str, people: int, seed: int, records_per_person: tuple[int, int] = RECORDS_PER_PERSON,
    duplicate_rate: float = DUPLICATE_RATE,
) -> list[dict]:
    """demo_people_planted's records without the planted details."""
    planted = demo_people_planted(domain=domain, people=people, seed=seed, records_per_person=records_per_person,
                                  duplicate_rate=duplicate_rate)
    return [record for record, _ in planted]
