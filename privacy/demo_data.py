"""Synthetic "private" datasets for demos and tests: realistic records full of personal details.

medical: patient-doctor dialogues; the patient gives their name and sometimes their date of birth,
phone, address or medical record number; the doctor answers by name.
finance: sentiment questions about financial news and client emails naming people, companies and
account numbers; the response is positive, negative or neutral with a short reason.

demo_records gives one record per person; privacy.demo_people gives several per patient
(customer), from the same templates and names.

Everything comes from Faker and random.Random seeded with `seed`, and nothing depends on today's
date, so one seed gives the same records (and the same bytes when written) on every run.
"""
import functools
import importlib
import random
import unicodedata
from datetime import date, timedelta

from faker import Faker

DEMO_DOMAINS = ("medical", "finance")

# --- medical ---------------------------------------------------------------------------------
# (condition, ways a patient describes it, the doctor's advice, when to seek urgent care)
MEDICAL_CONDITIONS = (
    ("a tension headache", (
        "I keep getting a dull, tight headache across my forehead", "my head feels like it is squeezed by a band",
        "I have headaches almost every afternoon, worse when I'm at the computer"),
     ("regular meals, water, breaks from the screen and ibuprofen at the lowest dose for a few days",
      "a headache diary, less caffeine, better sleep and paracetamol if needed"),
     "the headache is sudden and severe, or comes with a stiff neck, fever or weakness"),
    ("a migraine", (
        "I get throbbing pain on one side of my head with nausea, and light bothers me",
        "I see zigzag lines before a pounding headache starts"),
     ("resting in a dark room, taking your painkiller early in the attack, and noting the triggers",
      "a trial of a triptan, which I can prescribe, and regular sleep and meals"),
     "you have the worst headache of your life or lose vision or speech"),
    ("a chest wall strain", (
        "my chest hurts when I press on it or twist, since I moved furniture",
        "I have a sharp pain in the chest when I breathe deeply or lift my arm"),
     ("rest, a warm compress and anti-inflammatories, and avoiding heavy lifting for two weeks",),
     "the pain spreads to your arm or jaw, or you feel short of breath or sweaty"),
    ("acute bronchitis", (
        "I have had a chesty cough with yellow phlegm", "I cough all night and my chest rattles",
        "my cough started after a cold and will not go away"),
     ("fluids, honey in warm water, rest and paracetamol; antibiotics do not help most cases",
      "steam inhalation, rest and time: the cough can last three weeks"),
     "you cough up blood, have a high fever or struggle to breathe"),
    ("a sore throat from a viral infection", (
        "my throat is very sore and it hurts to swallow", "I have a scratchy throat and a mild fever"),
     ("warm salt-water gargles, fluids, throat lozenges and paracetamol",),
     "you cannot swallow your saliva, or your voice becomes muffled"),
    ("mechanical low back pain", (
        "my lower back aches after gardening and it is hard to stand up straight",
        "I have stiffness in my lower back every morning", "I hurt my back lifting a box at work"),
     ("staying gently active, heat packs, and ibuprofen, rather than bed rest",
      "short walks, stretching exercises I will send you, and a physiotherapy referral if it persists"),
     "you have numbness between the legs or trouble passing urine"),
    ("gastritis", (
        "I have a burning pain in my upper stomach after meals", "my stomach hurts and I feel bloated and sick"),
     ("smaller meals, less alcohol and spicy food, and a two-week course of omeprazole",),
     "you vomit blood or pass black stools"),
    ("eczema", (
        "I have itchy, dry red patches on my elbows and hands", "my skin is cracking and itching at night"),
     ("a fragrance-free moisturiser several times a day and a mild steroid cream on the patches",
      "lukewarm showers, soap substitutes and an emollient after washing"),
     "the patches weep, crust or become very painful"),
    ("iron-deficiency anaemia", (
        "I feel exhausted all the time and get breathless on the stairs", "I am tired, pale and dizzy when I stand"),
     ("a blood test for iron and a full blood count; iron supplements if it confirms anaemia",),
     "you faint or have chest pain"),
    ("osteoarthritis of the knee", (
        "my knees ache and creak when I walk downstairs", "my knee is stiff in the morning and swells in the evening"),
     ("low-impact exercise such as cycling or swimming, weight management and paracetamol",
      "quadriceps strengthening exercises and a topical anti-inflammatory gel"),
     "the knee becomes hot, red and you cannot bear weight"),
    ("benign positional vertigo", (
        "the room spins when I turn over in bed", "I get dizzy for a few seconds when I look up"),
     ("the Epley manoeuvre, which I can show you, and getting up slowly",),
     "the dizziness comes with double vision, slurred speech or weakness"),
    ("a urinary tract infection", (
        "it burns when I pee and I need to go all the time", "I have pain low in my belly and cloudy urine"),
     ("a urine test and, if positive, a three-day course of antibiotics; drink plenty of water",),
     "you get a fever, back pain or start vomiting"),
    ("insomnia", (
        "I can't fall asleep until three in the morning", "I wake up at four every night and can't get back to sleep"),
     ("a fixed wake-up time, no screens an hour before bed and no caffeine after noon",
      "cognitive behavioural therapy for insomnia, which works better than sleeping pills"),
     "you feel hopeless or have thoughts of harming yourself"),
    ("an anxiety disorder", (
        "my heart races and I feel panicky before meetings", "I worry constantly and can't relax"),
     ("breathing exercises, regular exercise, and a referral for talking therapy",),
     "you have thoughts of harming yourself"),
    ("high blood pressure", (
        "my blood pressure at the pharmacy was 160 over 100", "my home monitor keeps showing high readings"),
     ("a week of home readings twice a day, less salt and alcohol, and a review of the results with me",),
     "you get a severe headache, chest pain or blurred vision"),
    ("possible type 2 diabetes", (
        "I am thirsty all the time and get up at night to urinate", "I have lost weight without trying and feel tired"),
     ("a fasting glucose and HbA1c blood test this week",),
     "you feel confused, very drowsy or are vomiting"),
    ("hay fever", (
        "my eyes itch and I sneeze every morning in spring", "I have a runny nose and watery eyes when I go outside"),
     ("a daily non-drowsy antihistamine and a steroid nasal spray through the pollen season",),
     "you start wheezing or your lips swell"),
    ("an ear infection", (
        "my ear hurts and sounds are muffled", "I have a throbbing earache since my cold"),
     ("paracetamol or ibuprofen and a warm compress; most ear infections clear within three days",),
     "you get swelling behind the ear or a high fever"),
    ("acid reflux", (
        "I get heartburn every night after dinner", "I taste acid in my mouth when I lie down"),
     ("eating earlier, raising the head of the bed and an antacid after meals",),
     "food sticks when you swallow or you lose weight"),
)
PATIENT_GREETINGS = (
    "Hello doctor, my name is {name}.", "Hi Dr. {doctor_last}, this is {name}.",
    "Good morning, I'm {name}, {age} years old.", "Dear Dr. {doctor_last}, my name is {name} and I am {age}.",
)
SYMPTOM_SENTENCES = ("For the past {duration}, {symptom}.", "{Symptom}, and it has been going on for {duration}.")
PATIENT_DETAILS = (
    "My date of birth is {dob}.", "My MRN is {mrn}.", "You can reach me at {phone}.",
    "I live at {address}.", "My email is {email}.",
)
PATIENT_QUESTIONS = ("What should I do?", "Is this serious?", "Do I need to come in?", "Can I treat this at home?")
PATIENT_SIGNATURES = ("Thanks, {first}", "Best regards, {name}", "{name}", "Thank you, {first} {last}")
DOCTOR_GREETINGS = ("Hi {first},", "Dear {name},", "Hello {title} {last},")
DOCTOR_BODIES = (
    "From what you describe, this sounds like {condition}. I recommend {advice}.",
    "Thank you for the details, {first}. It is most likely {condition}; I suggest {advice}.",
)
DOCTOR_CLOSINGS = ("Please seek urgent care if {red_flag}.", "If {red_flag}, go to the emergency department.")
DURATIONS = ("two days", "three days", "five days", "ten days", "two weeks", "three weeks", "several months")

# --- finance ---------------------------------------------------------------------------------
SENTIMENT_QUESTIONS = (
    "What is the sentiment of this financial news? Answer positive, negative or neutral.\n\n{text}",
    "Classify the sentiment of the following message as positive, negative or neutral.\n\n{text}",
    "Read this and tell me whether its sentiment is positive, negative or neutral: {text}",
)
# sentiment -> (text template, reason)
FINANCE_TEMPLATES = {
    "positive": (
        ("{company} shares rose {pct}% after chief executive {person} reported quarterly revenue of ${amount} "
         "million, ahead of analyst estimates.", "revenue beat expectations and the shares rose"),
        ("{company} won a ${amount} million contract from {company2}; finance chief {person} said it would lift "
         "margins next year.", "a large new contract is expected to improve margins"),
        ("{company} raised its full-year guidance on {date} as {person} cited strong demand in {city}.",
         "the company expects higher results"),
        ("Hi {advisor_first}, thank you for moving the funds from account {account} so quickly; everything arrived "
         "on {date}. Best, {client}", "the client thanks the advisor for fast, correct service"),
        ("Dear {advisor}, I am delighted with how my portfolio did this year; please keep the same allocation for "
         "account {account}. Regards, {client} ({phone})", "the client is delighted with the returns"),
    ),
    "negative": (
        ("{company} shares fell {pct}% after chief executive {person} warned that earnings would miss forecasts.",
         "a profit warning sent the shares down"),
        ("Regulators fined {company} ${amount} million over reporting failures, and finance chief {person} "
         "resigned on {date}.", "a fine and a resignation point to governance problems"),
        ("{company} will cut {jobs} jobs and close its {city} plant, {person} said.",
         "job cuts and a plant closure signal weak business"),
        ("Dear {advisor}, a fee of ${fee} was charged twice to my account {account} on {date} and nobody has "
         "called me back at {phone}. I am very unhappy. {client}", "the client complains about a double charge "
         "and no reply"),
        ("Hello, this is {client}. My card was blocked while travelling and the {city} branch could not help. "
         "I am thinking of moving my savings (IBAN {iban}) elsewhere.", "the client is frustrated and may leave"),
    ),
    "neutral": (
        ("{company} will hold its annual shareholder meeting on {date} in {city}, spokesperson {person} said.",
         "a scheduling announcement with no good or bad news"),
        ("{company} appointed {person} as chief operating officer, effective {date}.",
         "a routine management appointment"),
        ("{company} reported revenue of ${amount} million, in line with expectations.",
         "results matched expectations"),
        ("Hi {advisor_first}, please update the mailing address on account {account} to {address}. Thanks, "
         "{client}", "an administrative request without an opinion"),
        ("Dear {advisor}, could you send me the {year} tax statement for account {account}? My email is {email}. "
         "Regards, {client}", "a request for a document, no sentiment expressed"),
    ),
}
SENTIMENT_ANSWERS = (
    "{Sentiment}. Reason: {reason}.", "{Sentiment}: {reason}.", "The sentiment is {sentiment}; {reason}.",
)


def phone_draw(rng: random.Random) -> str:
    area, exchange, line = rng.randint(201, 989), rng.randint(200, 999), rng.randint(0, 9999)
    formats = ("({a}) {e}-{l:04d}", "{a}-{e}-{l:04d}", "+1 {a} {e} {l:04d}", "{a}.{e}.{l:04d}")
    return rng.choice(formats).format(a=area, e=exchange, l=line)


MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")


def date_text(rng: random.Random, day: date) -> str:
    """The day in one of the usual written forms (month names not from the locale: same bytes everywhere)."""
    month = MONTHS[day.month - 1]
    forms = (f"{month} {day.day}, {day.year}", f"{day:%m/%d/%Y}", day.isoformat(), f"{day.day} {month} {day.year}")
    return rng.choice(forms)


# Where the demo people's names come from: Faker's name lists of these locales, never en_US (the
# lists the detector once matched) and never anything the detector reads (it reads no name list):
# a recall measured on these names is a recall on names the detector has not been built from.
NAME_LOCALES = ("en_IE", "ga_IE", "de_DE", "nl_NL", "sv_SE", "fi_FI", "it_IT", "es_ES", "fr_FR", "pt_BR", "vi_VN",
                "yo_NG", "ig_NG", "en_IN", "tr_TR", "cs_CZ", "hu_HU", "hr_HR", "zu_ZA", "tw_GH", "id_ID")
_ASCII = str.maketrans({"ł": "l", "ø": "o", "đ": "d", "ß": "ss", "æ": "ae", "ı": "i", "œ": "oe", "ð": "d", "þ": "th"})


@functools.cache
def _name_lists(locale: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(female first names, male first names, last names) of a Faker locale, in a fixed order."""
    provider = importlib.import_module(f"faker.providers.person.{locale}").Provider

    def names(*attributes: str) -> tuple[str, ...]:
        found = next((getattr(provider, a) for a in attributes if getattr(provider, a, None)), ())
        return tuple(sorted(set(found)))  # some lists are weighted dicts: their keys, sorted

    return (names("first_names_female", "first_names"), names("first_names_male", "first_names"),
            names("last_names"))


def email_local_part(*words: str) -> str:
    """Words as an email address's local part: lowercase ASCII letters and digits ("Ní Bhraonáin"
    -> "nibhraonain")."""
    text = unicodedata.normalize("NFKD", "".join(words).lower().translate(_ASCII))
    return "".join(c for c in text if c.isascii() and c.isalnum())


def person_draw(rng: random.Random) -> dict:
    """A person with a name from one of NAME_LOCALES: {"first", "last", "name", "title"}."""
    female = rng.random() < 0.5
    female_firsts, male_firsts, lasts = _name_lists(rng.choice(NAME_LOCALES))
    first = rng.choice(female_firsts if female else male_firsts)
    last = rng.choice(lasts)
    return {"first": first, "last": last, "name": f"{first} {last}", "title": "Ms." if female else "Mr."}


def _medical_record(fake: Faker, rng: random.Random) -> dict:
    patient = person_draw(rng)
    doctor = person_draw(rng)
    condition, symptoms, advice, red_flag = rng.choice(MEDICAL_CONDITIONS)
    symptom = rng.choice(symptoms)
    age = rng.randint(18, 89)
    birthday = date(2024 - age, 1, 1) + timedelta(days=rng.randrange(365))
    values = {
        **patient, "doctor_last": doctor["last"], "age": age, "duration": rng.choice(DURATIONS),
        "symptom": symptom, "Symptom": symptom[0].upper() + symptom[1:], "dob": date_text(rng, birthday),
        "mrn": f"{rng.randint(10_000_000, 99_999_999)}", "phone": phone_draw(rng),
        "address": fake.address().replace("\n", ", "),
        "email": f"{email_local_part(patient['first'])}.{email_local_part(patient['last'])}@{fake.free_email_domain()}",
        "condition": condition, "advice": rng.choice(advice), "red_flag": red_flag,
    }
    details = rng.sample(PATIENT_DETAILS, k=rng.randint(0, 3))
    message = " ".join([rng.choice(PATIENT_GREETINGS), rng.choice(SYMPTOM_SENTENCES), *details,
                        rng.choice(PATIENT_QUESTIONS)])
    instruction = f"{message}\n{rng.choice(PATIENT_SIGNATURES)}".format(**values)
    answer = f"{rng.choice(DOCTOR_BODIES)} {rng.choice(DOCTOR_CLOSINGS)}"
    response = f"{rng.choice(DOCTOR_GREETINGS)}\n{answer}\nTake care,\nDr. {doctor['name']}".format(**values)
    planted = {"name": [patient["name"], patient["first"], patient["last"], doctor["name"], doctor["last"]],
               "email": [values["email"]], "phone": [values["phone"]], "date": [values["dob"]], "id": [values["mrn"]]}
    return {"instruction": instruction, "response": response}, planted


def _finance_record(fake: Faker, rng: random.Random) -> dict:
    sentiment = rng.choice(tuple(FINANCE_TEMPLATES))
    template, reason = rng.choice(FINANCE_TEMPLATES[sentiment])
    client, advisor, person = person_draw(rng), person_draw(rng), person_draw(rng)
    day = date(2023, 1, 1) + timedelta(days=rng.randrange(730))
    values = {
        "company": fake.company(), "company2": fake.company(), "person": person["name"],
        "pct": round(rng.uniform(1.5, 18.0), 1), "amount": rng.randint(12, 950), "jobs": rng.randint(2, 40) * 50,
        "city": fake.city(), "date": date_text(rng, day), "year": day.year, "fee": rng.randint(15, 95),
        "advisor": advisor["name"], "advisor_first": advisor["first"], "client": client["name"],
        "account": f"{rng.randint(10**9, 10**11 - 1)}", "phone": phone_draw(rng), "iban": fake.iban(),
        "address": fake.address().replace("\n", ", "),
        "email": f"{email_local_part(client['first'])}{rng.randint(1, 99)}@{fake.free_email_domain()}",
    }
    text = template.format(**values)
    instruction = rng.choice(SENTIMENT_QUESTIONS).format(text=text)
    response = rng.choice(SENTIMENT_ANSWERS).format(
        Sentiment=sentiment.capitalize(), sentiment=sentiment, reason=reason
    )
    people = (client, advisor, person)
    planted = {"name": [p["name"] for p in people] + [advisor["first"]], "email": [values["email"]],
               "phone": [values["phone"]], "date": [values["date"]], "id": [values["account"], values["iban"]]}
    return {"instruction": instruction, "response": response}, planted


def demo_records(*, domain: str, n: int, seed: int) -> list[dict]:
    """n distinct {"instruction", "response"} records of the domain ("medical" or "finance"),
    the same for the same seed (and installed Faker version)."""
    return [record for record, _ in demo_records_planted(domain=domain, n=n, seed=seed)]


def demo_records_planted(*, domain: str, n: int, seed: int) -> list[tuple[dict, dict[str, list[str]]]]:
    """demo_records with, per record, the personal details planted in it by kind ("name": the
    people's full names and the first or last names used alone; "email", "phone", "date", "id"):
    the ground truth a PII detector's recall is measured against."""
    if domain not in DEMO_DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; choose one of {', '.join(DEMO_DOMAINS)}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive number of records, not {n!r}")
    fake = Faker("en_US")
    fake.seed_instance(seed)
    rng = random.Random(seed)
    make = _medical_record if domain == "medical" else _finance_record
    records, seen = [], set()
    for _ in range(50 * n):  # duplicates are rare; the bound only guards against an endless loop
        record, planted = make(fake, rng)
        key = (" ".join(record["instruction"].split()), " ".join(record["response"].split()))
        if key not in seen:
            seen.add(key)
            records.append((record, planted))
            if len(records) == n:
                return records
    raise ValueError(f"could not generate {n} distinct {domain} records")
