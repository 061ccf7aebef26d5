"""Scoring: token log-probs are exactly the training loss's terms, candidate scoring is
consistent between the single and batched forms, and the fast path (shared prefix run once,
logits only where scored, batches by length) gives the scores of the plain definition."""
import math
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from evaluation.scoring import (
    continuation_logprobs,
    record_logprobs,
    response_logprobs,
    sequence_logprob,
    token_logprobs,
)
from privacy.dp.train import IGNORE_INDEX, DPTrainConfig, collate, examples_tokenize, lora_wrap, per_example_loss
from synthesis.lm.chat import record_text
from tests.support.tiny_model import tiny_model_dir


def plain_logprobs(model, examples: list[tuple[list[int], list[int]]]) -> list[list[float]]:
    """The definition, one whole text at a time (no cache, no padding): per example, the
    log_softmax over the full vocabulary at every position, kept where the label is scored."""
    rows = []
    with torch.no_grad():
        for ids, labels in examples:
            logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].float()
            values = torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(ids[1:]).unsqueeze(1)).squeeze(1)
            rows.append([value for value, label in zip(values.tolist(), labels[1:]) if label != IGNORE_INDEX])
    return rows


def plain_record_logprobs(model, tokenizer, records: list[dict], *, max_length: int) -> list[float]:
    """record_logprobs by the definition: every token of each whole tokenized record."""
    examples = [(ids, ids) for ids, _ in examples_tokenize(records, tokenizer, max_length=max_length)]
    return [sum(row) for row in plain_logprobs(model, examples)]


def input_tokens_counted(model) -> list[int]:
    """A list that grows by the number of input tokens (padding included) of each forward pass."""
    counts = []
    model.get_input_embeddings().register_forward_hook(lambda module, args, output: counts.append(args[0].numel()))
    return counts

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
    response = record_text(record, tokenizer, end_of_sequence=False)[len(prompt):]
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


# --- the fast path gives the plain definition's scores --------------------------------------

FILLED = [{"instruction": "Patient reports fever . What should they do ?",
           "response": f"Dear {name} , for fever rest and drink water . Dear {name}"}
          for name in ("Alice", "Bob Carol", "Dan Erin Alice", "Erin", "Carol Dan")]


def test_candidates_filled_into_one_record_score_as_whole_records(tiny):
    model, tokenizer = tiny
    # names of 1 to 3 tokens: the texts differ in length after the shared prefix, so batches pad
    fast = record_logprobs(model, tokenizer, FILLED, max_length=48, batch_size=2)
    assert fast == pytest.approx(plain_record_logprobs(model, tokenizer, FILLED, max_length=48), abs=1e-4)


def test_shared_prefix_is_run_once_not_once_per_text(tiny):
    model, tokenizer = tiny
    counts = input_tokens_counted(model)
    record_logprobs(model, tokenizer, FILLED, max_length=48, batch_size=len(FILLED))
    examples = examples_tokenize(FILLED, tokenizer, max_length=48)
    longest = max(len(ids) for ids, _ in examples)
    shared = next(i for i in range(longest) if len({ids[i] for ids, _ in examples}) > 1)
    # one pass over the shared tokens but the last, then one padded batch of the rest
    assert counts == [shared - 1, len(FILLED) * (longest - shared + 1)]
    assert sum(counts) < sum(len(ids) for ids, _ in examples)


def test_token_logprobs_with_a_shared_prompt_match_the_definition_token_by_token(tiny):
    model, tokenizer = tiny
    # same instruction, different responses: the shared part is the prompt (labels IGNORE_INDEX)
    records = [{"instruction": RECORDS[0]["instruction"], "response": record["response"]} for record in RECORDS]
    examples = examples_tokenize(records, tokenizer, max_length=48)
    fast = token_logprobs(model, tokenizer, records, max_length=48, batch_size=3)
    plain = plain_logprobs(model, examples)
    assert [len(row) for row in fast] == [len(row) for row in plain]
    for one, other in zip(fast, plain):
        assert one == pytest.approx(other, abs=1e-5)


def test_scores_do_not_depend_on_batch_size_or_token_budget(tiny, monkeypatch):
    from evaluation import scoring

    model, tokenizer = tiny
    reference = record_logprobs(model, tokenizer, RECORDS, max_length=48, batch_size=len(RECORDS))
    monkeypatch.setattr(scoring, "MAX_BATCH_TOKENS", 40)  # about one record per forward pass
    for batch_size in (1, 3, 64):
        assert record_logprobs(model, tokenizer, RECORDS, max_length=48, batch_size=batch_size) == pytest.approx(
            reference, abs=1e-4)


def test_lora_wrapped_model_scores_as_the_definition(tiny):
    model, tokenizer = tiny
    config = DPTrainConfig(target_epsilon=1.0, delta=1e-3, dp=False, epochs=None, steps=1, max_length=48)
    wrapped = lora_wrap(AutoModelForCausalLM.from_pretrained(model.name_or_path), config)
    with torch.no_grad():
        for name, parameter in wrapped.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)  # a non-zero update, so LoRA changes the scores
    wrapped.eval()
    fast = record_logprobs(wrapped, tokenizer, FILLED, max_length=48, batch_size=2)
    assert fast == pytest.approx(plain_record_logprobs(wrapped, tokenizer, FILLED, max_length=48), abs=1e-4)
    assert fast != pytest.approx(record_logprobs(model, tokenizer, FILLED, max_length=48), abs=1e-2)


class WithoutCacheOrLogitsToKeep(torch.nn.Module):
    """A causal LM with the plain interface only: no `logits_to_keep`, no KV cache returned."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask=None, past_key_values=None, use_cache=False):
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
        return SimpleNamespace(logits=logits, past_key_values=None)


def test_model_without_cache_or_logits_to_keep_scores_whole_texts(tiny):
    model, tokenizer = tiny
    plain_model = WithoutCacheOrLogitsToKeep(model)
    fast = record_logprobs(plain_model, tokenizer, FILLED, max_length=48, batch_size=2)
    assert fast == pytest.approx(plain_record_logprobs(model, tokenizer, FILLED, max_length=48), abs=1e-4)
    rows = token_logprobs(plain_model, tokenizer, RECORDS, max_length=48, batch_size=4)
    for one, other in zip(rows, plain_logprobs(model, examples_tokenize(RECORDS, tokenizer, max_length=48))):
        assert one == pytest.approx(other, abs=1e-5)


def test_texts_too_short_to_score_get_no_scores(tiny):
    model, tokenizer = tiny
    prompt = "Patient Alice reports fever ."
    assert continuation_logprobs(model, tokenizer, prompt, ["", "Dear Alice", ""]) == pytest.approx(
        [0.0, sequence_logprob(model, tokenizer, prompt, "Dear Alice"), 0.0])


def test_bfloat16_model_scores_close_to_float32(tiny):
    model, tokenizer = tiny
    half = AutoModelForCausalLM.from_pretrained(model.name_or_path, dtype=torch.bfloat16).eval()
    full = record_logprobs(model, tokenizer, RECORDS, max_length=48)
    approximate = record_logprobs(half, tokenizer, RECORDS, max_length=48)
    assert all(math.isfinite(value) for value in approximate)
    assert approximate == pytest.approx(full, rel=0.02)
