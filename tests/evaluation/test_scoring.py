"""Scoring: token log-probs are exactly the training loss's terms, and candidate scoring is
consistent between the single and batched forms."""
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from evaluation.scoring import (
    chat_text,
    continuation_logprobs,
    record_logprobs,
    response_logprobs,
    sequence_logprob,
    token_logprobs,
)
from privacy.dp_train import IGNORE_INDEX, collate, examples_tokenize, per_example_loss
from tests.support.tiny_model import tiny_model_dir

RECORDS = [
    {"instruction": f"Patient {name} reports {symptom} . What should they do ?",
     "response": f"Dear {name} , for {symptom} rest and drink water" + " ." * extra}
    for extra, name in enumerate(("Alice", "Bob", "Carol", "Dan", "Erin"))
    for symptom in ("headache", "fever")
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    texts = [record["instruction"] + " " + record["response"] for record in RECORDS]
    directory = tiny_model_dir(tmp_path_factory.mktemp("tiny"), texts)
    return AutoModelForCausalLM.from_pretrained(directory).eval(), AutoTokenizer.from_pretrained(directory)


def test_token_logprobs_mean_equals_per_example_loss(tiny):
    model, tokenizer = tiny
    rows = token_logprobs(model, tokenizer, RECORDS, max_length=48, batch_size=3)
    examples = examples_tokenize(RECORDS, tokenizer, max_length=48)
    with torch.no_grad():
        losses = per_example_loss(model, *collate(tokenizer.pad_token_id)(examples)).tolist()
    assert [len(row) for row in rows] == [sum(label != IGNORE_INDEX for label in labels) for _, labels in examples]
    for row, loss in zip(rows, losses):
        assert -sum(row) / len(row) == pytest.approx(loss, rel=1e-5)
        assert all(value <= 0 for value in row)


def test_token_logprobs_do_not_depend_on_batch_padding(tiny):
    model, tokenizer = tiny
    alone = [token_logprobs(model, tokenizer, [record], max_length=48)[0] for record in RECORDS]
    batched = token_logprobs(model, tokenizer, RECORDS, max_length=48, batch_size=len(RECORDS))
    for one, many in zip(alone, batched):
        assert many == pytest.approx(one, abs=1e-5)


def test_response_logprob_is_sum_of_token_logprobs_and_matches_sequence_logprob(tiny):
    model, tokenizer = tiny
    record = RECORDS[3]
    total = response_logprobs(model, tokenizer, [record], max_length=48)[0]
    assert total == pytest.approx(sum(token_logprobs(model, tokenizer, [record], max_length=48)[0]))
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": record["instruction"]}],
                                           tokenize=False, add_generation_prompt=True)
    response = chat_text(record, tokenizer)[len(prompt):]
    assert sequence_logprob(model, tokenizer, prompt, response) == pytest.approx(total, abs=1e-4)


def test_continuation_logprobs_batched_equal_single_calls(tiny):
    model, tokenizer = tiny
    prompt = "Patient Alice reports fever . Dear"
    continuations = ["Alice", "Bob , for fever", "Carol , rest and drink water ."]
    batched = continuation_logprobs(model, tokenizer, prompt, continuations, batch_size=2)
    single = [sequence_logprob(model, tokenizer, prompt, text) for text in continuations]
    assert batched == pytest.approx(single, abs=1e-5)
    assert all(value < 0 and math.isfinite(value) for value in batched)
    # a longer continuation that extends a shorter one adds log-probs <= 0
    assert sequence_logprob(model, tokenizer, prompt, "Bob , for") >= sequence_logprob(model, tokenizer, prompt, "Bob , for fever")


def test_record_logprob_changes_with_the_instruction_but_response_logprob_only_through_context(tiny):
    model, tokenizer = tiny
    record = RECORDS[0]
    renamed = {**record, "instruction": record["instruction"].replace("Alice", "Bob")}
    whole = record_logprobs(model, tokenizer, [record, renamed], max_length=48)
    responses = response_logprobs(model, tokenizer, [record, renamed], max_length=48)
    assert whole[0] != pytest.approx(whole[1])
    # the whole text includes the response, so it is never more likely than the response alone
    assert whole[0] < responses[0] and whole[1] < responses[1]
