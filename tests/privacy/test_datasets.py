"""Parsing, validating and splitting dataset files (privacy.datasets): plain functions, no database."""
import json

import pytest

from privacy.datasets import DatasetError, dataset_parse, dataset_split, default_delta

LIMITS = {"max_file_bytes": 1_000_000, "max_record_chars": 1_000}


def write(tmp_path, name: str, content: str | bytes):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


def jsonl(*records) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def parse_error(path, **limits) -> DatasetError:
    with pytest.raises(DatasetError) as caught:
        dataset_parse(path, **(LIMITS | limits))
    return caught.value


# --- accepted files ----------------------------------------------------------------------------
@pytest.mark.parametrize("instruction_field, response_field", [
    ("instruction", "response"), ("input", "output"), ("question", "answer"),
])
def test_each_field_pair_is_mapped_to_instruction_and_response(tmp_path, instruction_field, response_field):
    path = write(tmp_path, "d.jsonl", jsonl({instruction_field: " Q1 ", response_field: "A1\n"},
                                            {instruction_field: "Q2", response_field: "A2"}))
    parsed = dataset_parse(path, **LIMITS)
    assert parsed.records == [{"instruction": "Q1", "response": "A1"}, {"instruction": "Q2", "response": "A2"}]
    assert parsed.field_mapping == {"instruction": instruction_field, "response": response_field}
    assert parsed.source_format == "jsonl"


def test_the_first_pair_in_order_wins_when_a_record_has_several(tmp_path):
    path = write(tmp_path, "d.jsonl", jsonl({"question": "q", "answer": "a", "instruction": "i", "response": "r"}))
    parsed = dataset_parse(path, **LIMITS)
    assert parsed.records == [{"instruction": "i", "response": "r"}]
    assert parsed.field_mapping == {"instruction": "instruction", "response": "response"}


def test_csv_with_quoted_newlines_commas_and_a_bom(tmp_path):
    content = '\ufeffquestion,answer,extra\r\n"Line one\nline two, with comma","He said ""hi""",x\r\nQ2,A2,y\r\n'
    parsed = dataset_parse(write(tmp_path, "d.csv", content), **LIMITS)
    assert parsed.source_format == "csv"
    assert parsed.field_mapping == {"instruction": "question", "response": "answer"}
    assert parsed.records == [
        {"instruction": "Line one\nline two, with comma", "response": 'He said "hi"'},
        {"instruction": "Q2", "response": "A2"},
    ]


def test_jsonl_with_a_bom_blank_lines_and_json_extension(tmp_path):
    records = jsonl({"instruction": "é", "response": "日本"}), jsonl({"instruction": "x", "response": "y"})
    content = "\ufeff" + records[0] + "\n  \n" + records[1]
    path = write(tmp_path, "d.JSON", content)
    parsed = dataset_parse(path, **LIMITS)
    assert parsed.records == [{"instruction": "é", "response": "日本"}, {"instruction": "x", "response": "y"}]


# --- refused files: each message names the line and what to do -----------------------------------
def test_unknown_extension_names_the_accepted_ones(tmp_path):
    error = parse_error(write(tmp_path, "d.txt", "hello"))
    assert ".jsonl" in str(error) and ".csv" in str(error) and ".json" in str(error)


@pytest.mark.parametrize("content", ["", "\ufeff", "  \n\n"])
def test_empty_file_is_refused(tmp_path, content):
    assert "empty" in str(parse_error(write(tmp_path, "d.jsonl", content)))


def test_csv_with_only_a_header_has_no_records(tmp_path):
    assert "no records" in str(parse_error(write(tmp_path, "d.csv", "instruction,response\n")))


def test_non_utf8_bytes_name_line_and_byte_offset(tmp_path):
    content = jsonl({"instruction": "a", "response": "b"}).encode() + b'{"instruction": "caf\xe9", "response": "x"}\n'
    error = parse_error(write(tmp_path, "d.jsonl", content))
    assert error.errors == [error.errors[0]] and error.errors[0].startswith("line 2: not valid UTF-8 (byte 0xe9")
    offset = content.index(b"\xe9")
    assert f"byte offset {offset})" in str(error)


def test_lines_that_are_not_json_objects_are_all_reported(tmp_path):
    content = jsonl({"instruction": "a", "response": "b"}) + "{broken\n" + '["a", "b"]\n' + '"text"\n'
    error = parse_error(write(tmp_path, "d.jsonl", content))
    assert len(error.errors) == 3
    assert error.errors[0].startswith("line 2: not valid JSON")
    assert error.errors[1].startswith("line 3: is a JSON list") and "array" not in error.errors[0]
    assert error.errors[2].startswith("line 4: is a JSON str")


def test_broken_csv_quoting_names_the_line_the_record_starts_on(tmp_path):
    content = 'instruction,response\nq1,a1\nq2,\n"q3 unclosed,a3\nq4,a4\n'
    error = parse_error(write(tmp_path, "d.csv", content))
    assert error.errors[0].startswith("line 3: field 'response' is empty")  # rows before the break are checked
    assert error.errors[1].startswith("line 4: broken CSV quoting") and "double quotes" in error.errors[1]


def test_csv_row_with_too_many_fields_says_to_quote_commas(tmp_path):
    error = parse_error(write(tmp_path, "d.csv", "instruction,response\nq1,a1\nq2,a2,oops\n"))
    assert error.errors == [error.errors[0]] and error.errors[0].startswith("line 3:") and "quote" in str(error)


def test_csv_header_without_an_accepted_pair_lists_what_it_found(tmp_path):
    error = parse_error(write(tmp_path, "d.csv", "prompt,completion\nq,a\n"))
    assert "line 1" in str(error) and "'prompt'" in str(error) and "question/answer" in str(error)


def test_csv_header_with_half_a_pair_names_the_missing_column(tmp_path):
    error = parse_error(write(tmp_path, "d.csv", "instruction,output\nq,a\n"))
    assert "'response'" in str(error) and "line 1" in str(error)


def test_missing_empty_and_non_string_fields_are_reported_with_their_lines(tmp_path):
    content = jsonl(
        {"instruction": "ok", "response": "fine"},
        {"instruction": "no response"},
        {"instruction": "   ", "response": "x"},
        {"instruction": "q", "response": 42},
        {"instruction": "q", "response": None},
    )
    error = parse_error(write(tmp_path, "d.jsonl", content))
    assert [message.split(":")[0] for message in error.errors] == ["line 2", "line 3", "line 4", "line 5"]
    assert "missing field 'response'" in error.errors[0]
    assert "'instruction' is empty" in error.errors[1]
    assert "'response' is a number" in error.errors[2]
    assert "missing field 'response'" in error.errors[3]


def test_mixing_field_pairs_across_records_is_refused(tmp_path):
    content = jsonl({"instruction": "a", "response": "b"}, {"question": "c", "answer": "d"})
    error = parse_error(write(tmp_path, "d.jsonl", content))
    assert "line 2" in str(error) and "line 1" in str(error) and "one pair" in str(error)


def test_a_record_without_any_accepted_field_lists_its_keys(tmp_path):
    error = parse_error(write(tmp_path, "d.jsonl", jsonl({"prompt": "a", "completion": "b"})))
    assert "line 1" in str(error) and "'prompt'" in str(error)


def test_duplicates_after_whitespace_normalisation_are_reported_with_both_lines_and_kept_or_dropped(tmp_path):
    content = jsonl({"instruction": "Hello  there", "response": "Hi"}, {"instruction": "x", "response": "y"},
                    {"instruction": " Hello there ", "response": "Hi\n"})
    path = write(tmp_path, "d.jsonl", content)
    kept = dataset_parse(path, **LIMITS)
    assert kept.duplicates == [(3, 1)] and len(kept.records) == 3 and not kept.duplicates_dropped
    dropped = dataset_parse(path, **LIMITS, drop_duplicates=True)
    assert dropped.duplicates == [(3, 1)] and [r["instruction"] for r in dropped.records] == ["Hello  there", "x"]


def test_file_larger_than_the_limit_is_refused_before_reading(tmp_path):
    path = write(tmp_path, "d.jsonl", jsonl({"instruction": "a" * 100, "response": "b"}))
    assert "limit is 50 bytes" in str(parse_error(path, max_file_bytes=50))


def test_record_longer_than_the_limit_names_its_line_and_length(tmp_path):
    content = jsonl({"instruction": "a", "response": "b"}, {"instruction": "a" * 8, "response": "b" * 5})
    error = parse_error(write(tmp_path, "d.jsonl", content), max_record_chars=12)
    assert error.errors[0].startswith("line 2: the record is 13 characters") and "limit is 12" in str(error)


def test_errors_are_collected_up_to_twenty_then_reporting_stops(tmp_path):
    path = write(tmp_path, "d.jsonl", "not json\n" * 50)
    error = parse_error(path)
    assert len(error.errors) == 21 and error.errors[19].startswith("line 20:")
    assert "stopped after 20" in error.errors[-1]
    assert str(error).startswith("21 problems found:")


# --- split and delta -------------------------------------------------------------------------------
RECORDS = [{"instruction": f"q{i}", "response": f"a{i}"} for i in range(100)]


def test_split_is_deterministic_for_a_seed_and_different_for_another():
    first = dataset_split(RECORDS, heldout_fraction=0.1, seed=7)
    assert dataset_split(RECORDS, heldout_fraction=0.1, seed=7) == first
    assert dataset_split(RECORDS, heldout_fraction=0.1, seed=8)[1] != first[1]


def test_split_is_disjoint_complete_and_sized_by_rounding():
    train, heldout = dataset_split(RECORDS, heldout_fraction=0.25, seed=0)
    assert len(heldout) == 25 and len(train) == 75
    assert {r["instruction"] for r in train}.isdisjoint(r["instruction"] for r in heldout)
    assert sorted(train + heldout, key=lambda r: int(r["instruction"][1:])) == RECORDS


@pytest.mark.parametrize("n, fraction, expected_heldout", [
    (2, 0.1, 1), (3, 0.5, 2), (5, 0.5, 2), (1, 0.5, 0), (10, 0.0, 0), (5, 0.01, 1), (1000, 0.1, 100),
])
def test_heldout_at_least_one_when_possible_and_train_never_empty(n, fraction, expected_heldout):
    train, heldout = dataset_split(RECORDS[:n] if n <= 100 else RECORDS * 10, heldout_fraction=fraction, seed=1)
    assert len(heldout) == expected_heldout and len(train) == n - expected_heldout >= 1


@pytest.mark.parametrize("fraction", [-0.1, 0.51, 1.0, float("nan"), "0.1", True])
def test_split_refuses_fractions_outside_zero_to_half(fraction):
    with pytest.raises(DatasetError, match="0 to 0.5"):
        dataset_split(RECORDS, heldout_fraction=fraction, seed=0)


@pytest.mark.parametrize("n, delta", [
    (1, 1e-1), (9, 1e-1), (10, 1e-2), (50, 1e-2), (99, 1e-2), (100, 1e-3), (1000, 1e-4), (1500, 1e-4),
    (999_999, 1e-6), (1_000_000, 1e-7),
])
def test_default_delta_is_the_largest_power_of_ten_strictly_below_one_over_n(n, delta):
    assert default_delta(n) == delta
    assert default_delta(n) < 1 / n and default_delta(n) * 10 >= 1 / n


@pytest.mark.parametrize("n", [0, -5, 2.5, True])
def test_default_delta_refuses_non_positive_counts(n):
    with pytest.raises(ValueError):
        default_delta(n)
