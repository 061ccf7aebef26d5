"""Names found from their place in the parse, and surnames inside company names, towns and
eponyms told from persons (privacy.pii_syntax, through privacy.pii's detector)."""
import pytest

from privacy.pii import CONFIDENT_SCORE, pii_find


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
    spans = [span for span in pii_find("Whether Yusuf can go back depends on the test.") if span.kind == "name"]
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
