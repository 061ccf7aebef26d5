"""Names found from their place in the parse, and surnames inside company names, towns and
eponyms told from persons (privacy.pii_syntax, through privacy.pii's detector)."""
import pytest

from privacy.pii import CONFIDENT_SCORE, pii_find
from privacy.pii_rules import looks_like_medicine
from privacy.pii_syntax import is_organisation_or_place


def names(text: str) -> list[str]:
    return [span.text for span in pii_find(text) if span.kind == "name"]


@pytest.mark.parametrize("text, expected", [
    ("Aoife and I both had the flu last week.", ["Aoife"]),  # beside "I"
    ("Please ask the nurse whether Yusuf can go back to school.", ["Yusuf"]),  # the subject of "can go"
    ("Lorcan's asthma is much better since he started the inhaler.", ["Lorcan"]),  # the owner of "asthma"
    ("Keanu's fracture is healing and his test results are fine.", ["Keanu"]),  # not an eponym
    ("Amadou Diallo missed the diabetic eye screening twice.", ["Amadou Diallo"]),  # the subject, two words
    ("Rhiannon Pryce-Llewellyn had her booster on Monday.", ["Rhiannon Pryce-Llewellyn"]),  # hyphenated
    ("The branch will close, spokesperson Robin Ó hEarchú said.", ["Robin Ó hEarchú"]),  # Irish h- form
    ("Dear Sir, the fee was charged twice. I am very unhappy. Bärbel Dobes\nPlease reply.", ["Bärbel Dobes"]),
])
def test_a_name_no_context_introduces_is_found_from_its_place_in_the_sentence(text, expected):
    assert names(text) == expected


def test_a_name_found_only_from_its_place_is_not_confident():
    from privacy import pii

    before = (pii._configured_model, pii._configured_ner)
    pii.pii_configure(model=before[0], ner="none")  # the published NER misses him; the fine-tuned one finds him too
    try:
        spans = [span for span in pii_find("Whether Yusuf can go back depends on the test.") if span.kind == "name"]
    finally:
        pii.pii_configure(model=before[0], ner=before[1])
    assert [span.source for span in spans] == ["syntax"] and spans[0].score < CONFIDENT_SCORE


@pytest.mark.parametrize("text", [
    "Williams, Lam and Jones raised its full-year guidance on strong demand.",  # a firm of three surnames
    "Jones-Davis will cut 450 jobs and close its Lake Jacquelineshire plant.",  # "its": a company
    "Regulators fined Miller Inc $300 million over reporting failures.",  # an organisation's last word
    "Austin and Sons won a large contract last year.",
    "Cook, Owen and Bonilla shares rose 1.9% after the results.",  # "shares" after the whole list
    "The company cited strong demand in Colemouth and Port Scottborough.",  # towns
    "My mother has Parkinson's disease and my aunt has Crohn's disease.",  # eponyms
    "The Sainsbury's pharmacy gave me the wrong strength.",  # a determiner: a thing
    "Negative: a profit warning sent the shares down.",  # a label, not the subject
    "Procter & Gamble raised prices again.",  # "&" joins a firm's names
    "I'm flying to Kraków for my sister's wedding.",  # the goal of a verb of motion: a place
    "Raynaud's makes my fingers go white in the cold.",  # a possessive before a verb: an eponym
])
def test_organisations_places_and_eponyms_are_not_names(text):
    assert names(text) == []


def test_a_person_after_to_is_still_a_person():
    assert names("I sent the forms to Maria Gonzalez last week.") == ["Maria Gonzalez"]


def test_a_person_named_in_full_elsewhere_is_found_in_a_list_too():
    text = "Ann Smith joined the board. Smith, Jones and Brown signed the letter."
    assert "Smith" in names(text)[1:]  # the lone "Smith" in the list: a mention of a found name



@pytest.mark.parametrize("text, expected", [
    # a person's pronoun refers back to a name the NER calls a place or a firm
    ("I sent the deposit to Gaspard last week but he never received it.", ["Gaspard"]),
    ("Yesterday Bogdan slipped on the ice and broke his wrist.", ["Bogdan"]),  # after a fronted phrase
    ("I lent Ottilie my car and now I need it back.", ["Ottilie"]),  # the indirect object
    ("I paid Faustyna the rent last week.", ["Faustyna"]),
    ("Please tell Leocadia that the clinic is closed on Friday.", ["Leocadia"]),  # the object of "tell"
    ("Thank Bartholomeus for the flowers.", ["Bartholomeus"]),
    ("Ye-jin and I both have hay fever.", ["Ye-jin"]),  # beside "I"; a lower-case Korean syllable
    ("My son Jae-won has a rash on his neck.", ["Jae-won"]),
    ("Could you change the details for Teodozja Nowicka before Monday?", ["Teodozja Nowicka"]),
    ("I am writing on behalf of Ruslan Abdulov about the overdraft.", ["Ruslan Abdulov"]),
    ("I stayed at Marisela's and she cooked for me.", ["Marisela"]),  # a person's house, not an illness
])
def test_a_name_is_found_from_what_is_said_of_it(text, expected):
    assert names(text) == expected


@pytest.mark.parametrize("text", [
    "Is Sertraline okay with alcohol?",  # a USAN stem (-traline)
    "I have been taking Lansoprazole with Gaviscon for a month.",  # joined to a medicine
    "Halifax charged me twice for one transfer.",  # what an institution does to money
    "Citibank froze my account without warning.",
    "My cousin is a cashier at Greggs near the station.",  # "at" after a noun: a workplace
    # guards for the rules above: each would be a name without them
    "Regulators fined Hale-Winter $20 million for the breach.",  # a lone double-barrelled name, not a dative
    "My dad has Alzheimer's and keeps losing his keys.",  # an illness, not what "his" refers to
    "We went camping in Exmoor and I got bitten by something.",  # "in X and I": a place
])
def test_medicines_firms_workplaces_and_illnesses_are_not_names(text):
    assert names(text) == []


@pytest.mark.parametrize("text, word", [
    ("The doctor said Calpol syrup is fine for a six-month-old.", "Calpol"),  # a form after it
    ("Priadel 400 mg is what the ward gave me.", "Priadel"),  # a dose after it
    ("Is Beechams with Lemsip too much paracetamol?", "Lemsip"),  # joined to one after "with": not enough
])
def test_what_follows_a_word_can_make_it_a_medicine(text, word):
    start = text.index(word)
    expected = word != "Lemsip"
    assert looks_like_medicine(text, start, start + len(word)) is expected


@pytest.mark.parametrize("text, word", [
    ("My Chase app keeps logging me out.", "Chase"),
    ("I want to close my Zopa account today.", "Zopa"),
])
def test_a_firms_product_after_a_word_makes_it_a_firm(text, word):
    start = text.index(word)
    assert is_organisation_or_place(text, start, start + len(word))


def test_a_given_name_before_a_surname_particle_is_part_of_the_name():
    """The model tags "Ní Bhraonáin" and leaves the given name before it (found serving the base
    model: "Síbhán Ní Bhraonáin" and "P.P. Siobhán Ní Bhraonáin" kept their first names)."""
    text = "Dear Dr. Ní Bhraonáin,\n\nI hope you are well.\n\nSíbhán Ní Bhraonáin,\n\nP.P. Siobhán Ní Bhraonáin,"
    assert names(text) == ["Ní Bhraonáin", "Síbhán Ní Bhraonáin", "Siobhán Ní Bhraonáin"]


@pytest.mark.parametrize("text, expected", [
    # round 4 (the fifth held-out set's misses, each tried here on other words)
    ("Oluwaseun's temperature was 39 last night and the paracetamol did nothing.", ["Oluwaseun"]),  # what only a person has
    ("Could you refer Zdenka to the dermatology clinic?", ["Zdenka"]),  # the object of "refer"
    ("We need to register Thandiwe with a dentist near the new flat.", ["Thandiwe"]),
    ("Kind regards,\nMr al-Rashidi", ["al-Rashidi"]),  # a hyphened particle is part of the surname
])
def test_round_four_finds_an_owner_an_object_and_a_hyphened_particle(text, expected):
    assert names(text) == expected


@pytest.mark.parametrize("text", [
    "Is Tourette's something a child grows out of?",  # a yes/no question's "'s" is no "is"
    "Is Ménière's the reason I keep losing my balance?",
    "Yours sincerely,\nComplaints and Liaison",  # a department signs
    "Thank you for your patience.\nCustomer Relations",
])
def test_round_four_does_not_take_illnesses_or_departments_for_names(text):
    assert names(text) == []


def test_a_possessive_in_a_question_about_a_persons_things_stays_a_person():
    assert names("Is Oluwaseun's appointment still on Thursday?") == ["Oluwaseun"]


def test_an_illness_after_a_possessive_does_not_make_the_owner_an_eponym():
    """Kept on purpose: "Hashimoto's thyroiditis" (the fifth set) is masked as a name, because a
    rule that read "-itis" after a possessive as an eponym lost "Kofi's tonsillitis"; recall first."""
    assert names("Kofi's tonsillitis is back again.") == ["Kofi"]


@pytest.mark.parametrize("text, expected", [
    # round 5 (the sixth held-out set's misses, each tried here on other words)
    ("Client: Oyelaran Bamidele 12/04/1979 - asking for a copy of the lease.", ["Oyelaran Bamidele"]),  # a label's colon
    ("Hi, it's Mthunzi - my card was declined at the till.", ["Mthunzi"]),  # a dash ends the phrase
    ("Kalani, Noelani and I want to open a savings account together.", ["Kalani", "Noelani"]),  # a list ending "and I"
    ("Please post the deeds to Ngaio? She is dealing with the sale for us.", ["Ngaio"]),  # "She" opens the next sentence
    ("Can Ilinca have Nurofen and paracetamol together? She is six.", ["Ilinca"]),  # the last sentence's subject
    ("We want to add Seo-ah Byun to the mortgage.", ["Seo-ah Byun"]),  # an account holder; the given name spaCy splits
    ("Pieter de Wit and Anouk van der Berg want a joint account.", ["Pieter de Wit", "Anouk van der Berg"]),
])
def test_round_five_finds_labels_dashes_lists_and_particle_names(text, expected):
    assert names(text) == expected


@pytest.mark.parametrize("text", [
    "Thank you for writing about your husband's Raynaud's.",  # a bare possessive after another owner
    "I was diagnosed with Addison's in March and the fatigue is awful.",  # where an illness is named
    "Wegovy is out of stock at every pharmacy in town.",  # what is out of stock is a thing
    "Can the practice prescribe Saxenda instead?",
    "Guillain-Barré was ruled out last week.",  # a lone double-barrelled word, accents too
    "Yours sincerely,\nCardiology Bookings",  # departments
    "Will my Clubcard points still be added?",  # a loyalty scheme's points
    "The adviser told me Santander would match the rate.",  # what a bank does to a rate
    "I picked up her Fostair at the chemist.",  # what "her" owns is a thing
    "We banked with Banco de Portugal for years.",  # a particle in a firm's name
])
def test_round_five_does_not_take_illnesses_medicines_departments_or_firms_for_names(text):
    assert names(text) == []


@pytest.mark.parametrize("text, expected", [
    # round 6 (the seventh held-out set's misses, each tried here on other words)
    ("hiya its wairimu again, can i move my appt to tues pls", ["wairimu"]),  # lower case, a word English hardly uses
    ("my little girl zeynep has had a temperature since last night", ["zeynep"]),
    ("hi tavita, ngaire here. is the clinic open on saturday?", ["tavita", "ngaire"]),
    ("can i bring my colleague dragomir to the meeting? - ivanka", ["dragomir", "ivanka"]),
    ("Thanks so much, Wiremu & Aroha", ["Wiremu", "Aroha"]),  # a couple signs
    ("Yours sincerely\n\nOksana Hrytsenko\nComplaints Manager", ["Oksana Hrytsenko"]),  # a blank line after the sign-off
    ("I want my money back. - Radka Novotná", ["Radka Novotná"]),  # a signature after a dash
    ("When I rang, the woman I spoke to, Sunniva, said it was fine.", ["Sunniva"]),
    ("From: Ilkka Rautio\nSubject: my father's will", ["Ilkka Rautio"]),  # a forwarded header
    ("Estate of the late Teodoro Baptista", ["Teodoro Baptista"]),
    ("We have two sons, Tane (9) and Kauri (6).", ["Tane", "Kauri"]),  # ages
    ("Koa, please stop the ibuprofen and ring us.", ["Koa"]),  # called to at the start
    ("Dear Mr ap Rhys, thank you for your letter.", ["ap Rhys"]),  # a Welsh particle
    ("Statement taken by DS Okonkwo at the station.", ["Okonkwo"]),  # a police rank
    ("She says her ex-husband, Dariusz, still has the twins (Zofia and Kinga).", ["Dariusz", "Zofia", "Kinga"]),
    ("Passed to Eamonn in Collections. Sent to Saoirse to review.", ["Eamonn", "Saoirse"]),
])
def test_round_six_finds_lower_case_names_signatures_headers_ages_and_notes(text, expected):
    assert names(text) == expected


@pytest.mark.parametrize("text", [
    "hi, can i move my physio appt to weds? thx",  # casual abbreviations are not names
    "Referral has been made to the Colleague who covers Callback requests.",  # capitalised common nouns
    "The lesion is consistent with Hodgkin lymphoma.",  # an eponym without the possessive
    "Re: Purchase of 22 Rowan Close, Ilkley",  # a town after a street
    "Your client: Eastfield Haulage Ltd",  # a firm after a weak context
    "Apple Pay has stopped working since the update.",
])
def test_round_six_does_not_take_abbreviations_common_nouns_or_firms_for_names(text):
    assert names(text) == []


@pytest.mark.parametrize("text, expected", [
    # round 7 (the eighth held-out set's misses, each tried here on other words)
    ("Thank you to the ward staff, especially Adjoa, for everything.", ["Adjoa"]),
    ("We had a little girl called Anahera on Sunday!", ["Anahera"]),  # "a ... called X"
    ("With love from all the Haapala family", ["Haapala"]),  # "the X family": a surname
    ("Hello, you're chatting with Dilnoza from the Cards team.", ["Dilnoza"]),
    ("hey so my mate Tendai paid me back twice by mistake", ["Tendai"]),
    ("she's called Rotich Kiplagat, same surname as me", ["Rotich Kiplagat"]),
    ("Agent (Vaitiare): Thanks for waiting.", ["Vaitiare"]),  # a transcript's speaker
    ("Two children (Ebere, 7 and Ifeoma, 4) live with the client.", ["Ebere", "Ifeoma"]),  # ages after a comma
    ("Client attended. Married Olumide Bakare in Abuja in 2014.", ["Olumide Bakare"]),
    # the firm's name repeats the surname, which is masked there too: it names the person
    ("My buyer's solicitor (Rizal Hamdan at Hamdan Law) says they are ready.", ["Rizal Hamdan", "Hamdan"]),
    ("notes re her late husband Tavake's estate", ["Tavake"]),
    ("You do not have to leave on that date.\n\nKetevan Beridze\nHousing Solicitor", ["Ketevan Beridze"]),  # a signature block
    ("---\nMakerita, can you pick this one up please?", ["Makerita"]),  # called to at a line's start
])
def test_round_seven_finds_praise_naming_families_transcripts_ages_and_signature_blocks(text, expected):
    assert names(text) == expected


@pytest.mark.parametrize("text", [
    "he banks with Starling, i'm with you lot",  # where someone banks is a bank
    "Thanks, Rheumatology Admin",  # a department signs
    "You may refer it to the Financial Ombudsman Service.",
    "Handover Ward 22: bed 14 refusing evening meds.",
    "My landlord (Parkside Lettings) served the notice.",  # a firm's word after it
])
def test_round_seven_does_not_take_banks_departments_or_firms_for_names(text):
    assert names(text) == []


@pytest.mark.parametrize("text, expected", [
    # round 8 (the ninth held-out set's misses, each tried here on other words)
    ("hiya its wanjiku kamau, my daughter has a rash", ["wanjiku kamau"]),  # a lower-case full name
    ("Hi Tomasz and Halina, thanks for the documents.", ["Tomasz", "Halina"]),  # a greeting of two
    ("Message from Ayelet Shaked-Levi: my wound is red.", ["Ayelet Shaked-Levi"]),
    ("She looked after me and baby Kahurangi last week.", ["Kahurangi"]),
    ("She leaves her estate to her nephews, Aitor and Xabier.", ["Aitor", "Xabier"]),
    ("My kids Sefa and Lupe are at the local school.", ["Sefa", "Lupe"]),  # joined names after a role
    ("Costs:\n- Partner (Whetu Rangi): £350 per hour", ["Whetu Rangi"]),
    ("Please contact our trainee, Gethin Prosser.", ["Gethin Prosser"]),
    ("joint account with my ex husband tiberiu oancea, how do i leave it", ["tiberiu oancea"]),
    ("hi nuno, sorry. beatriz and i are both fine with it", ["nuno", "beatriz"]),  # "X and i"
    ("Payee: Adebola Ogunleye\nAmount: £40", ["Adebola Ogunleye"]),
    ("It should go through now. Itzel, Customer Support", ["Itzel"]),  # a signature with its team
    ("Please call the ward if it gets worse. Solomone (Ward Sister)", ["Solomone"]),
    ("Quantum is still disputed. Kalolaine, can you chase the report?", ["Kalolaine"]),  # called to mid-text
])
def test_round_eight_finds_lower_case_full_names_pairs_senders_and_signatures_with_roles(text, expected):
    assert names(text) == expected


@pytest.mark.parametrize("text", [
    "I have reviewed your complaint and i am upholding it.",  # a verb after "i am"
    "Since starting Rivastigmine he has been sleepy.",  # a USAN stem
    "Please find attached the sealed Order; Quantum is agreed.",  # legal nouns
])
def test_round_eight_does_not_take_verbs_medicines_or_legal_nouns_for_names(text):
    assert names(text) == []
