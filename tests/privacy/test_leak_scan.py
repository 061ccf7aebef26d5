"""The leak scanner (privacy.leak_scan) finds a private record's text however it is written down,
and does not cry wolf over shorter overlaps or a lone common name."""
import json

from privacy import leak_scan
from privacy.leak_scan import PrivateTextIndex, directories_scan, file_scan, span_mask

RECORDS = {
    "train": [
        {"instruction": "Hello doctor, my name is John Smith. My knees ache and creak when I walk downstairs.",
         "response": "Thank you, John. Try low-impact exercise such as cycling or swimming."},
        {"instruction": "Hi, this is Grace Hopper. You can reach me at (555) 201-7781.", "response": "Call us.",
         "patient_id": "P-00042"},
    ],
    "heldout": [{"instruction": "My skin is cracking and itching at night, what helps?", "response": "Moisturise."}],
}


def test_an_eight_word_span_is_found_through_case_punctuation_and_json_escapes():
    index = PrivateTextIndex(RECORDS)
    quoted = json.dumps({"text": "notes\n" + "MY KNEES ACHE, AND CREAK WHEN I WALK — downstairs!"}, ensure_ascii=True)

    findings = index.scan(quoted, file="report.json")

    assert [(f.file, f.kind, f.record) for f in findings] == [("report.json", "span", "train[0]")]
    assert findings[0].masked == span_mask(findings[0].text) and findings[0].masked.startswith("m* k**** a***")


def test_seven_words_or_a_lone_first_name_are_not_findings():
    index = PrivateTextIndex(RECORDS)
    assert index.scan("my knees ache and creak when I") == []
    assert index.scan("John asked about swimming; Grace too.") == []


def test_identifying_values_are_found_alone_the_detected_names_phones_and_the_other_fields():
    index = PrivateTextIndex(RECORDS, identifiers={"heldout[0]": ["Mary Jane Watson", "Watson"]})

    found = {(f.record, f.text) for f in index.scan("john smith / 555 201 7781 / p-00042 / Mary Jane Watson")}

    assert found == {("train[0]", "john smith"), ("train[1]", "555 201 7781"), ("train[1]", "p 00042"),
                     ("heldout[0]", "mary jane watson")}


def test_every_file_is_scanned_whatever_its_name_or_type_also_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(leak_scan, "CHUNK_BYTES", 64)
    monkeypatch.setattr(leak_scan, "CHUNK_OVERLAP", 48)
    index = PrivateTextIndex(RECORDS)
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "weights.safetensors").write_bytes(
        b"\x00\xff" * 50 + b"Try low-impact exercise such as cycling or swimming" + b"\x93" * 50)
    (tmp_path / "clean.txt").write_text("Nothing private here at all, only words about the weather today.")

    findings, files = directories_scan(index, [tmp_path])

    assert files == 2 and [(f.file.endswith("weights.safetensors"), f.record) for f in findings] == [(True, "train[0]")]
    assert file_scan(index, tmp_path / "clean.txt") == []
