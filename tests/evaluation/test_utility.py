"""Utility metrics of the target model on a tiny model: held-out loss is the training loss,
ROUGE-L scores the backend's greedy answers, the pairwise judge sees each pair in both orders and
gives a win-rate only where its verdicts follow the answers rather than their position, and IFD
falls when the instruction becomes predictive of the response."""
import math
import statistics
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from evaluation.intervals import mean_interval, wilson_interval
from evaluation.utility import (
    JUDGE_MIN_CONSISTENCY,
    JUDGE_QUESTION,
    heldout_loss_finding,
    heldout_loss_report,
    ifd_report,
    ifd_scores,
    judge_prompt,
    pairwise_win_rate,
    response_losses,
    rouge_l_against_references,
    rouge_l_report,
)
from privacy.dp.train import DPTrainConfig, collate, dp_lora_train, examples_tokenize, lora_wrap, per_example_loss
from synthesis.filtering import rouge_l, tokenize_for_similarity
from synthesis.lm.generation import SamplingParams, TransformersBackend
from tests.support.tiny_model import tiny_model_dir

# The response repeats the name and symptom of the instruction: predictable from it, not without it.
RECORDS = [
    {"instruction": f"Patient {name} reports {symptom} .", "response": f"Dear {name} , rest for {symptom} ."}
    for name in ("Alice", "Bob", "Carol", "Dan")
    for symptom in ("headache", "fever")
]
MAX_LENGTH = 48
TRAIN_CONFIG = DPTrainConfig(
    target_epsilon=8.0, delta=1e-3, dp=False, steps=40, epochs=None, learning_rate=0.02,
    logical_batch_size=8, physical_batch_size=8, max_length=MAX_LENGTH, lora_rank=8,
    target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"),
)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    texts = [record["instruction"] + " " + record["response"] for record in RECORDS] + ["GOOD bad"]
    return tiny_model_dir(tmp_path_factory.mktemp("tiny"), texts)


@pytest.fixture(scope="module")
def tokenizer(tiny_dir):
    return AutoTokenizer.from_pretrained(tiny_dir)


def base_model(tiny_dir):
    return lora_wrap(AutoModelForCausalLM.from_pretrained(tiny_dir), TRAIN_CONFIG)


@pytest.fixture(scope="module")
def trained_model(tiny_dir, tokenizer):
    """LoRA trained without DP until it reproduces each record's response greedily."""
    model = base_model(tiny_dir)
    dp_lora_train(model, examples_tokenize(RECORDS, tokenizer, max_length=MAX_LENGTH), TRAIN_CONFIG,
                  pad_id=tokenizer.pad_token_id)
    return model.eval()


def test_utility_module_imports_without_django():
    code = "import sys, evaluation.utility; assert not any(m.startswith('django') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --- held-out loss ---------------------------------------------------------------------------

def test_response_losses_equal_per_example_loss_computed_directly(tiny_dir, tokenizer):
    model = base_model(tiny_dir).eval()
    with torch.no_grad():
        batch = collate(tokenizer.pad_token_id)(examples_tokenize(RECORDS, tokenizer, max_length=MAX_LENGTH))
        direct = per_example_loss(model, *batch).tolist()
    measured = response_losses(model, tokenizer, RECORDS, max_length=MAX_LENGTH, batch_size=3)
    assert measured == pytest.approx(direct, abs=1e-5)
    assert all(loss > 0 for loss in measured)


def test_response_losses_restore_training_mode_and_compute_no_gradients(tiny_dir, tokenizer):
    model = base_model(tiny_dir).train()
    response_losses(model, tokenizer, RECORDS, max_length=MAX_LENGTH)
    assert model.training
    assert all(parameter.grad is None for parameter in model.parameters())


def test_heldout_perplexity_is_exp_of_the_mean_loss(tiny_dir, tokenizer):
    model = base_model(tiny_dir)
    report = heldout_loss_report(model, tokenizer, RECORDS, max_length=MAX_LENGTH)
    losses = response_losses(model, tokenizer, RECORDS, max_length=MAX_LENGTH)
    assert report["n"] == len(RECORDS)
    assert report["loss"] == pytest.approx(sum(losses) / len(losses))
    assert report["perplexity"] == pytest.approx(math.exp(report["loss"]))


def test_heldout_loss_has_the_t_interval_over_the_per_record_losses(tiny_dir, tokenizer):
    model = base_model(tiny_dir)
    report = heldout_loss_report(model, tokenizer, RECORDS, max_length=MAX_LENGTH)
    losses = response_losses(model, tokenizer, RECORDS, max_length=MAX_LENGTH)
    half_width = 2.3646 * statistics.stdev(losses) / math.sqrt(8)  # t(0.975, 7 df) = 2.3646, 8 records
    assert report["loss_interval"]["n"] == report["n"] == 8 and report["loss_interval"]["method"] == "t"
    assert report["loss_interval"]["low"] == pytest.approx(report["loss"] - half_width, abs=1e-3)
    assert report["loss_interval"]["high"] == pytest.approx(report["loss"] + half_width, abs=1e-3)


def test_heldout_loss_is_lower_after_training_on_the_records(tiny_dir, tokenizer, trained_model):
    before = heldout_loss_report(base_model(tiny_dir), tokenizer, RECORDS, max_length=MAX_LENGTH)
    after = heldout_loss_report(trained_model, tokenizer, RECORDS, max_length=MAX_LENGTH)
    assert after["loss"] < before["loss"] / 2


def test_heldout_loss_report_refuses_no_records(tiny_dir, tokenizer):
    with pytest.raises(ValueError, match="at least one"):
        heldout_loss_report(base_model(tiny_dir), tokenizer, [], max_length=MAX_LENGTH)


# --- ROUGE-L ---------------------------------------------------------------------------------

def test_rouge_l_is_1_when_greedy_answers_reproduce_the_references(tokenizer, trained_model):
    report = rouge_l_against_references(TransformersBackend(trained_model, tokenizer), RECORDS, max_new_tokens=16)
    assert report["mean"] == pytest.approx(1.0)
    assert report["scores"] == [pytest.approx(1.0)] * len(RECORDS)
    assert report["n"] == len(RECORDS) and len(report["examples"]) == 5
    assert report["examples"][0]["generated"] == report["examples"][0]["reference"] == RECORDS[0]["response"]


def test_rouge_l_equals_rouge_l_of_independently_generated_greedy_answers(tiny_dir, tokenizer):
    backend = TransformersBackend(base_model(tiny_dir), tokenizer)
    report = rouge_l_against_references(backend, RECORDS, max_new_tokens=12)
    prompts = [[{"role": "user", "content": record["instruction"]}] for record in RECORDS]
    texts = [c.text for c in backend.generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=12))]
    expected = [rouge_l(tokenize_for_similarity(text), tokenize_for_similarity(record["response"]))
                for text, record in zip(texts, RECORDS)]
    assert report["scores"] == pytest.approx(expected)
    assert report["mean"] == pytest.approx(sum(expected) / len(expected))
    assert [example["generated"] for example in report["examples"]] == texts[:5]
    assert report["mean"] < 1.0  # the untrained model does not reproduce the references


def test_rouge_l_mean_has_its_t_interval_within_zero_and_one():
    records = [{"instruction": "q", "response": "rest and drink water"}] * 3
    report = rouge_l_report(records, ["rest and drink water", "rest", "nothing at all"])
    assert report["mean_interval"] == mean_interval(report["scores"], bounds=(0.0, 1.0))
    assert report["mean_interval"]["low"] == 0.0 and report["mean_interval"]["n"] == 3  # clipped: scores are >= 0
    assert report["mean_interval"]["high"] == 1.0 and report["mean"] < 1.0
    one = rouge_l_report(records[:1], ["rest"])
    assert one["mean_interval"]["low"] is None and one["mean_interval"]["n"] == 1  # one record: no interval


def test_rouge_l_report_refuses_answers_that_do_not_match_the_records():
    with pytest.raises(ValueError, match="2 answers for 3 records"):
        rouge_l_report(RECORDS[:3], ["a", "b"])
    with pytest.raises(ValueError, match="at least one record"):
        rouge_l_report([], [])


# --- pairwise win-rate -----------------------------------------------------------------------

class FixedJudge:
    """Stand-in for the judge model's next_token_probs: the same probabilities for every prompt."""

    def __init__(self, probabilities: dict[str, float]):
        self.probabilities = probabilities
        self.prompts = []

    def next_token_probs(self, prompts, candidates):
        assert candidates == ["A", "B"]
        self.prompts.extend(prompts)
        return [dict(self.probabilities) for _ in prompts]


class ReadingJudge:
    """Stand-in judge that reads the answers: prefers the one containing GOOD, ties on TIE."""

    def next_token_probs(self, prompts, candidates):
        results = []
        for messages in prompts:
            question = messages[-1]["content"]
            answer_a, answer_b = question.split("Answer A:\n")[1].split("\n\nAnswer B:\n")
            if "TIE" in question:
                results.append({"A": 0.3, "B": 0.31})
            else:
                results.append({"A": 0.9, "B": 0.05} if "GOOD" in answer_a else {"A": 0.05, "B": 0.9})
        return results


def items(n: int) -> tuple[list[str], list[str], list[str]]:
    return [f"question {i}" for i in range(n)], [f"GOOD answer {i}" for i in range(n)], [f"bad answer {i}" for i in range(n)]


class LongerAnswerJudge:
    """Stand-in judge that prefers the longer answer wherever it is shown: no position bias."""

    def next_token_probs(self, prompts, candidates):
        results = []
        for messages in prompts:
            answer_a, answer_b = messages[-1]["content"].split("Answer A:\n")[1].split("\n\nAnswer B:\n")
            answer_b = answer_b.split("\n\nWhich answer")[0]
            results.append({"A": 0.8, "B": 0.1} if len(answer_a) > len(answer_b) else {"A": 0.1, "B": 0.8})
        return results


class MixedJudge:
    """Reads the answers (ReadingJudge) on most questions; answers "A" whatever it sees on a
    question marked POSITION, and ties when the target is shown first on one marked HALF."""

    def next_token_probs(self, prompts, candidates):
        results = []
        for messages, read in zip(prompts, ReadingJudge().next_token_probs(prompts, candidates)):
            question = messages[-1]["content"]
            answer_a = question.split("Answer A:\n")[1].split("\n\nAnswer B:\n")[0]
            if "POSITION" in question:
                results.append({"A": 0.9, "B": 0.05})
            elif "HALF" in question and "GOOD" in answer_a:
                results.append({"A": 0.4, "B": 0.4})
            else:
                results.append(read)
        return results


def marked(n: int, marks: dict[int, str]) -> tuple[list[str], list[str], list[str]]:
    """items(n) with the questions at the given indices marked (POSITION, HALF, TIE)."""
    instructions, target, base = items(n)
    for index, mark in marks.items():
        instructions[index] = f"{mark} {instructions[index]}"
    return instructions, target, base


def test_a_judge_that_always_answers_a_is_inconsistent_and_gives_no_win_rate():
    judge = FixedJudge({"A": 0.9, "B": 0.1})
    result = pairwise_win_rate(judge, *items(64))
    assert len(judge.prompts) == 128  # every pair judged in both orders
    assert (result["consistent"], result["consistency"], result["informative"]) == (0, 0.0, False)
    assert result["consistency_interval"] == wilson_interval(0, 64)
    assert result["win_rate"] is None and result["win_rate_interval"] is None
    assert (result["wins"], result["losses"], result["ties"], result["n"]) == (0, 0, 64, 64)  # raw counts kept
    assert result["same_letter"] == {"A": 64, "B": 0}
    assert result["problem"].startswith("the judge picked by position in 64 of 64 items")
    assert "consistency 0.00" in result["problem"] and "no win-rate is given" in result["problem"]


def test_a_judge_preferring_the_longer_answer_is_consistent_and_counts_the_right_wins():
    instructions, target, base = items(10)
    base[7:] = [answer + " with many more words than the target" for answer in base[7:]]  # base longer in 3
    result = pairwise_win_rate(LongerAnswerJudge(), instructions, target, base)
    assert (result["consistency"], result["informative"], result["problem"]) == (1.0, True, None)
    assert (result["wins"], result["losses"], result["ties"]) == (7, 3, 0)
    assert [v["outcome"] for v in result["verdicts"]] == ["win"] * 7 + ["loss"] * 3
    assert result["win_rate"] == pytest.approx(0.7) and result["win_rate_interval"] == wilson_interval(7, 10)
    assert result["same_letter"] == {"A": 0, "B": 0}


def test_each_item_records_both_orders_and_its_outcome():
    result = pairwise_win_rate(MixedJudge(), *marked(2, {1: "POSITION"}))
    read, position = result["verdicts"]
    assert [order["target_position"] for order in read["orders"]] == ["A", "B"]
    assert [(o["choice"], o["prefers"]) for o in read["orders"]] == [("A", "target"), ("B", "target")]
    assert (read["consistent"], read["outcome"]) == (True, "win")
    assert [(o["choice"], o["prefers"]) for o in position["orders"]] == [("A", "target"), ("A", "base")]
    assert (position["consistent"], position["outcome"]) == (False, "tie")
    assert position["orders"][1]["p_a"] == 0.9 and position["orders"][1]["p_b"] == 0.05


def test_inconsistent_items_are_ties_and_the_win_rate_is_given_from_a_consistent_enough_judge():
    result = pairwise_win_rate(MixedJudge(), *marked(10, {7: "POSITION", 8: "POSITION", 9: "HALF"}))
    assert (result["consistent"], result["informative"]) == (7, True)
    assert (result["wins"], result["losses"], result["ties"]) == (7, 0, 3)
    assert result["same_letter"] == {"A": 2, "B": 0}  # the HALF item tied in one order: inconsistent, not by position
    assert result["win_rate"] == pytest.approx(0.85) and result["win_rate_interval"] == wilson_interval(8.5, 10)


def test_the_win_rate_is_given_at_the_minimum_consistency_and_not_below_it():
    at = pairwise_win_rate(MixedJudge(), *marked(10, {i: "POSITION" for i in range(6, 10)}))
    below = pairwise_win_rate(MixedJudge(), *marked(10, {i: "POSITION" for i in range(5, 10)}))
    assert at["consistency"] == JUDGE_MIN_CONSISTENCY and at["win_rate"] == pytest.approx(0.8)
    assert below["consistency"] == 0.5 and below["informative"] is False and below["win_rate"] is None
    assert (below["wins"], below["ties"]) == (5, 5)
    assert "picked by position in 5 of 10 items" in below["problem"] and "below 0.6" in below["problem"]


def test_ties_in_both_orders_are_consistent_and_count_half():
    result = pairwise_win_rate(ReadingJudge(), *marked(4, {2: "TIE", 3: "TIE"}))
    assert (result["wins"], result["losses"], result["ties"], result["n"]) == (2, 0, 2, 4)
    assert result["consistency"] == 1.0 and result["win_rate"] == pytest.approx(0.75)
    assert [verdict["outcome"] for verdict in result["verdicts"]] == ["win", "win", "tie", "tie"]


def test_win_rate_interval_counts_ties_half_like_the_win_rate():
    result = pairwise_win_rate(ReadingJudge(), *marked(10, {i: "TIE" for i in range(6, 10)}))
    assert (result["wins"], result["ties"], result["win_rate"]) == (6, 4, 0.8)
    assert result["win_rate_interval"] == wilson_interval(8, 10)  # 6 wins + 4 half wins of 10
    assert result["win_rate_interval"]["low"] < result["win_rate"] < result["win_rate_interval"]["high"]


def test_close_or_absent_probabilities_are_ties_within_the_margin():
    close = pairwise_win_rate(FixedJudge({"A": 0.5, "B": 0.52}), *items(10), tie_margin=0.1)
    absent = pairwise_win_rate(FixedJudge({"A": 0.0, "B": 0.0}), *items(10))
    decided = pairwise_win_rate(FixedJudge({"A": 0.5, "B": 0.52}), *items(10), tie_margin=0.01)
    assert close["ties"] == absent["ties"] == 10 and close["win_rate"] == absent["win_rate"] == 0.5
    assert decided["consistency"] == 0.0 and decided["win_rate"] is None  # "B" in both orders: by position


def test_both_orders_go_to_the_judge_in_one_batch_with_the_answers_swapped():
    class CountingJudge(FixedJudge):
        calls = 0

        def next_token_probs(self, prompts, candidates):
            self.calls += 1
            return super().next_token_probs(prompts, candidates)

    judge = CountingJudge({"A": 1.0, "B": 0.0})
    pairwise_win_rate(judge, ["What helps a fever ?", "And a cough ?"], ["target says rest", "target: honey"],
                      ["base says run", "base: nothing"])
    assert judge.calls == 1 and len(judge.prompts) == 4
    assert judge.prompts[0] == judge_prompt("What helps a fever ?", "target says rest", "base says run")
    assert judge.prompts[1] == judge_prompt("What helps a fever ?", "base says run", "target says rest")
    assert judge.prompts[3] == judge_prompt("And a cough ?", "base: nothing", "target: honey")
    shown = judge.prompts[0][-1]["content"]
    assert shown == JUDGE_QUESTION.format(instruction="What helps a fever ?", answer_a="target says rest",
                                          answer_b="base says run")
    assert "A or B only" in shown


def test_pairwise_win_rate_runs_with_a_real_judge_model(tiny_dir, tokenizer):
    result = pairwise_win_rate(TransformersBackend(base_model(tiny_dir), tokenizer), *items(6))
    assert result["n"] == 6 and result["wins"] + result["losses"] + result["ties"] == 6
    assert 0.0 <= result["consistency"] <= 1.0 and (result["win_rate"] is None) == (not result["informative"])
    assert all(0.0 <= o["p_a"] <= 1.0 and 0.0 <= o["p_b"] <= 1.0 for v in result["verdicts"] for o in v["orders"])


def test_pairwise_win_rate_refuses_lists_of_different_lengths():
    with pytest.raises(ValueError, match="same length"):
        pairwise_win_rate(FixedJudge({"A": 1.0}), ["q"], ["a", "b"], ["c"])


# --- IFD -------------------------------------------------------------------------------------

def test_ifd_is_the_loss_with_the_instruction_over_the_loss_with_an_empty_one(tiny_dir, tokenizer):
    model = base_model(tiny_dir)
    with_instruction = response_losses(model, tokenizer, RECORDS, max_length=MAX_LENGTH)
    empty = [{"instruction": "", "response": record["response"]} for record in RECORDS]
    without_instruction = response_losses(model, tokenizer, empty, max_length=MAX_LENGTH)
    expected = [c / u for c, u in zip(with_instruction, without_instruction)]
    assert ifd_scores(model, tokenizer, RECORDS, max_length=MAX_LENGTH) == pytest.approx(expected)


def test_ifd_falls_after_training_on_responses_predictable_from_their_instructions(tiny_dir, tokenizer, trained_model):
    before = ifd_scores(base_model(tiny_dir), tokenizer, RECORDS, max_length=MAX_LENGTH)
    after = ifd_scores(trained_model, tokenizer, RECORDS, max_length=MAX_LENGTH)
    assert all(score > 0 for score in before + after)
    assert all(a < b for a, b in zip(after, before))
    assert max(after) < 0.5  # the instruction now makes the response easy


def test_ifd_report_has_mean_median_count_intervals_and_a_20_bin_histogram(tokenizer, trained_model):
    report = ifd_report(trained_model, tokenizer, RECORDS, max_length=MAX_LENGTH)
    scores = ifd_scores(trained_model, tokenizer, RECORDS, max_length=MAX_LENGTH)
    assert report["n"] == len(RECORDS)
    assert report["mean"] == pytest.approx(sum(scores) / len(scores))
    assert report["median"] == pytest.approx(statistics.median(scores))
    assert len(report["histogram"]["counts"]) == 20 and len(report["histogram"]["edges"]) == 21
    assert sum(report["histogram"]["counts"]) == len(RECORDS)
    assert report["share_at_least_1"] == 0.0
    assert report["share_at_least_1_interval"] == wilson_interval(0, len(RECORDS))
    assert report["mean_interval"]["n"] == len(RECORDS)
    assert report["mean_interval"]["low"] < report["mean"] < report["mean_interval"]["high"]


def _loss(mean: float, spread: float = 0.1, n: int = 20) -> dict:
    losses = [mean + spread * (i - (n - 1) / 2) / n for i in range(n)]
    return {"loss": statistics.fmean(losses), "loss_interval": mean_interval(losses, bounds=(0.0, None)), "n": n}


def test_a_model_worse_than_the_base_on_held_out_loss_is_said_so_with_the_reason_for_distilled_models():
    finding = heldout_loss_finding(_loss(4.4), _loss(3.9), distilled_by="smollm2-135m-instruct",
                                   base_model="smollm2-135m-instruct")
    assert finding["comparison"] == "worse"
    assert finding["sentence"].startswith("Worse than the untouched base model on the real held-out records: 4.400 [")
    assert "the professional model is the base model itself" in finding["sentence"]
    other = heldout_loss_finding(_loss(4.4), _loss(3.9), distilled_by="/models/llama-70b", base_model="smollm2")
    assert "synthetic pairs" in other["sentence"] and "itself" not in other["sentence"]
    assert heldout_loss_finding(_loss(2.6), _loss(3.9))["comparison"] == "better"
    assert heldout_loss_finding(_loss(3.9, spread=2.0), _loss(3.95, spread=2.0))["comparison"] == "no_difference"
    assert heldout_loss_finding(_loss(3.0, n=1), _loss(3.9))["comparison"] == "no_interval"
