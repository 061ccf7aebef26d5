"""The detector's fine-tuned NER (privacy.pii_train): what it is trained on, that it is loaded only
into the pipeline it was trained from, and that a measurement tells unseen names apart."""
import json
import random
import re

import pytest
from django.core.management import CommandError, call_command

from privacy import pii
from privacy.demo_data import NAME_LOCALES, _name_lists
from privacy.pii_measure import _true_spans, pii_measure
from privacy.pii_train import (PII_TRAIN_SETS, SWAP_LOCALES, _swap_names, name_swapped, read_marked, trained_name_words,
                               training_texts)


@pytest.fixture
def detector_ner():
    """Switch the detector's fine-tuned NER directory for one test, and back."""
    before = (pii._configured_model, pii._configured_ner)
    yield lambda ner: pii.pii_configure(model=before[0], ner=ner)
    pii.pii_configure(model=before[0], ner=before[1])


def test_swapped_names_come_from_lists_the_demo_data_does_not_use():
    assert not set(SWAP_LOCALES) & set(NAME_LOCALES)
    demo = {word.lower() for locale in NAME_LOCALES for names in _name_lists(locale) for name in names
            for word in name.split()}
    firsts, lasts = _swap_names()
    assert len(firsts) > 1000 and len(lasts) > 1000
    assert not {name.lower() for name in (*firsts, *lasts)} & demo


def test_a_swapped_message_keeps_each_person_one_person_in_the_case_it_was_written():
    text = "Dear Ms Ruiz,\nAna Ruiz's scan is back. hi ana, dr ruiz here. ANA RUIZ"
    names = ["Ruiz", "Ana Ruiz", "ana", "ruiz", "ANA RUIZ"]
    swapped, values = name_swapped(text, names, random.Random(3))
    first, last = swapped.split("\n")[1].split("'")[0].split()
    assert first != "Ana" and last != "Ruiz"
    assert swapped == (f"Dear Ms {last},\n{first} {last}'s scan is back. hi {first.lower()}, dr {last.lower()} here. "
                       f"{first.upper()} {last.upper()}")
    assert set(values) == {last, f"{first} {last}", first.lower(), last.lower(), f"{first.upper()} {last.upper()}"}
    assert len(_true_spans(swapped, values)) == 5


def test_particles_and_initials_stay_and_a_message_without_names_weighs_more_than_one_with_copies():
    swapped, values = name_swapped("Buyer: Pieter van der Berg; payee J. Mwangi", ["Pieter van der Berg", "J. Mwangi"],
                                   random.Random(1))
    assert " van der " in swapped and "Pieter" not in swapped and "Berg" not in swapped and "Mwangi" not in swapped
    assert re.search(r"payee [A-Z]\. \w+\Z", swapped)
    texts = training_texts([("No names here, only Boots.", []), ("Hi Ana", ["Ana"])], swaps=3, negative_weight=2)
    assert [persons for _, persons in texts].count([]) == 7  # the nameless message and 2 x 3 copies
    assert len(texts) == 11 and all(persons == [(3, len(text))] for text, persons in texts[7:])


def test_the_shipped_ner_is_loaded_and_named(detector_ner):
    description = pii.pii_detector_description()
    assert description["ner_fine_tuned"] == str(pii.PII_NER_DIR)
    meta = json.loads((pii.PII_NER_DIR / "meta.json").read_text())
    assert meta["base"] == pii.DEFAULT_MODEL and meta["sources"] == [f"{name}.jsonl" for name in PII_TRAIN_SETS]
    assert f"fine-tuned on {meta['marked']} messages marked by hand" in description["text"]
    # a name in a context the published small pipeline misses (docs/RESULTS.md): the fine-tuned one finds it
    text = "Present: Nkemdirim, Oyelaran and the registrar."
    found = [span.text for span in pii.pii_find(text)]
    detector_ner("none")
    assert not pii.pii_detector_description()["ner_fine_tuned"]
    assert "fine-tuned" not in pii.pii_detector_description()["text"]
    assert [span.text for span in pii.pii_find(text)] != found


def test_a_fine_tuned_ner_of_another_pipeline_is_not_loaded(tmp_path, detector_ner):
    (tmp_path / "ner").mkdir()
    (tmp_path / "meta.json").write_text(json.dumps({"base": "en_core_web_lg", "base_version": "3.8.0"}))
    detector_ner(str(tmp_path))
    description = pii.pii_detector_description()
    assert not description["ner_fine_tuned"] and not description["rules_only"]
    assert pii.pii_find("Hello, my name is Ysolde Crumpton.")[0].text == "Ysolde Crumpton"


def test_the_measure_tells_recall_on_names_the_ner_never_met():
    seen = {"ana", "ruiz"}
    measured = pii_measure([("Dear Ana Ruiz, Ysolde Crumpton rang.", {"name": ["Ana Ruiz", "Ysolde Crumpton"]}),
                            ("Ana rang.", {"name": ["Ana"]})], seen=seen)
    assert measured["name"]["planted"] == 3 and measured["name"]["unseen_planted"] == 1
    assert measured["name"]["unseen_found"] in (0, 1)
    assert "unseen_planted" not in pii_measure([("Ana rang.", {"name": ["Ana"]})])["name"]
    words = trained_name_words(pii.PII_NER_DIR)
    assert {"ysolde", "crumpton"} <= words  # the first hand-written set has her
    assert trained_name_words(pii.PII_NER_DIR.parent / "no_such_dir") is None


def test_training_refuses_a_set_that_is_not_there(tmp_path):
    with pytest.raises(CommandError, match="no such marked set"):
        call_command("ksg_pii_train", "--out", str(tmp_path / "out"), "--sets", "pii_handwritten_heldout99")
    (tmp_path / "bad.jsonl").write_text('{"text": "Hi Ana", "pii": {"name": ["Ana"]}}\n{"txt": "Hi"}\n')
    with pytest.raises(CommandError, match=r"bad.jsonl, line 2: not a"):
        call_command("ksg_pii_train", "--out", str(tmp_path / "out"), "--sets", str(tmp_path / "bad.jsonl"))
    assert not (tmp_path / "out").exists()  # nothing written
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(CommandError, match="no marked messages in .*empty.jsonl"):
        call_command("ksg_pii_train", "--out", str(tmp_path / "out"), "--sets", str(tmp_path / "empty.jsonl"))
    with pytest.raises(CommandError, match="no spaCy pipeline en_core_web_none"):
        call_command("ksg_pii_train", "--out", str(tmp_path / "out"), "--base", "en_core_web_none")


@pytest.mark.slow
def test_training_writes_weights_the_detector_loads(tmp_path, detector_ner):
    marked = tmp_path / "marked.jsonl"
    rows = read_marked([pii.PII_NER_DIR.parent.parent / "tests" / "privacy" / "pii_sets" / "pii_handwritten.jsonl"])
    marked.write_text("".join(json.dumps({"text": text, "pii": {"name": names}}) + "\n" for text, names in rows[:12]))
    call_command("ksg_pii_train", "--out", str(tmp_path / "ner"), "--sets", str(marked), "--epochs", "1")
    meta = json.loads((tmp_path / "ner" / "meta.json").read_text())
    assert meta["marked"] == 12 and meta["epochs"] == 1 and meta["sources"] == ["marked.jsonl"]
    detector_ner(str(tmp_path / "ner"))
    assert pii.pii_detector_description()["ner_fine_tuned"] == str(tmp_path / "ner")
    assert pii.pii_find("Hello, my name is Ysolde Crumpton.")[0].text == "Ysolde Crumpton"


@pytest.mark.parametrize("text, word, expected", [
    ("Attendees: the registrar and the family.", "Attendees", True),
    ("Cannula re-sited at 06:00. Fluids restarted.", "Fluids", True),
    ("Claim CL-1 | Loss: two payments", "Loss", True),
    ("We spoke to Loss yesterday.", "Loss", False),  # not opening a line or sentence
    ("Quarrington rang the ward.", "Quarrington", False),  # English hardly uses the word
])
def test_a_common_english_word_opening_a_line_is_a_word(text, word, expected):
    from privacy.pii_not_names import is_capitalised_common_word

    start = text.index(word)
    assert is_capitalised_common_word(text, start, start + len(word)) is expected


def test_other_languages_greetings_and_a_signers_role_line_are_not_names():
    from privacy.pii_not_names import is_role_under_a_name, is_salutation

    assert is_salutation("Obrigada, Rosa", 0, 8) and is_salutation("Hälsningar", 0, 10)
    assert not is_salutation("Obrigada, Rosa", 10, 14)
    letter = "Thanks,\nIngrid Solberg\nPayments Operations Lead\nNordbank"
    name = (letter.index("Ingrid"), letter.index("Ingrid") + len("Ingrid Solberg"))
    role = letter.index("Payments")
    assert is_role_under_a_name(letter, role, role + len("Payments Operations Lead"), [name])
    assert not is_role_under_a_name(letter, role, role + len("Payments Operations Lead"), [])
    message = "Sorry to bother you, Ingrid Solberg.\nKjetil Berg"  # the line above is a sentence
    second = message.index("Kjetil")
    assert not is_role_under_a_name(message, second, len(message), [(21, 35)])


def test_the_detector_keeps_a_name_that_opens_a_sentence_on_strong_evidence():
    assert [span.text for span in pii.pii_find("Thanks so much,\nGrace")] == ["Grace"]
    found = [span.text for span in pii.pii_find("Hola, soy Ximena Quispe.\nSaludos,\nXimena")]
    assert "Hola" not in found and "Saludos" not in found and "Ximena Quispe" in found
    letter = "Yours sincerely,\nDr Oluwakemi Adeyinka-Ross\nConsultant Gastroenterologist"
    assert [span.text for span in pii.pii_find(letter)] == ["Oluwakemi Adeyinka-Ross"]


def test_a_measurement_is_recorded_only_on_a_set_the_ner_was_not_trained_on(tmp_path, detector_ner):
    import shutil

    ner = tmp_path / "ner_copy"
    shutil.copytree(pii.PII_NER_DIR, ner)
    meta = json.loads((ner / "meta.json").read_text())
    meta.pop("measured", None)
    (ner / "meta.json").write_text(json.dumps(meta))
    detector_ner(str(ner))
    assert "not yet measured on messages it was not trained on" in pii.pii_detector_description()["text"]
    lines = [{"text": "Dear Ms Quarrington, your scan is fine. Kind regards, Dr Olufemi Adebanjo",
              "pii": {"name": ["Quarrington", "Olufemi Adebanjo"]}}, {"text": "Your parcel is at Boots.", "pii": {}}]
    for name in ("tiny.jsonl", "pii_handwritten.jsonl"):
        (tmp_path / name).write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(CommandError, match="was trained on pii_handwritten.jsonl"):
        call_command("ksg_pii_measure", str(tmp_path / "pii_handwritten.jsonl"), "--record")
    call_command("ksg_pii_measure", str(tmp_path / "tiny.jsonl"), "--record")
    recorded = json.loads((ner / "meta.json").read_text())["measured"]
    assert [(m["set"], m["messages"], m["planted"]) for m in recorded] == [("tiny.jsonl", 2, 2)]
    detector_ner("none")
    detector_ner(str(ner))  # a new detector reads the meta again
    assert "on 2 hand-marked messages it was not trained on (tiny.jsonl)" in pii.pii_detector_description()["text"]
    detector_ner("none")
    with pytest.raises(CommandError, match="without a fine-tuned NER"):
        call_command("ksg_pii_measure", str(tmp_path / "tiny.jsonl"), "--record")
