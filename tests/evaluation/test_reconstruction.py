"""Name reconstruction: targets hide exactly one name and keep it as the truth; a model that
memorised its records picks the true name far more often than a random guess."""
from itertools import pairwise

import pytest

from evaluation.reconstruction import (
    MASK,
    RECONSTRUCTION_MAX_LENGTH,
    _filled,
    candidate_names,
    name_in,
    reconstruct_by_likelihood,
    reconstruction_report,
    reconstruction_targets,
)
from privacy.demo_data import demo_records
from tests.evaluation.memorised import memorised
from tests.evaluation.test_scoring import plain_record_logprobs


def test_targets_mask_exactly_the_first_name_and_keep_the_truth():
    records = demo_records(domain="finance", n=20, seed=2) + [{"instruction": "No names here.", "response": "None."}]
    targets = reconstruction_targets(records, limit=100)
    assert 0 < len(targets) <= 20
    for target in targets:
        original = records[target["index"]]
        field = target["field"]
        masked = target[field]
        assert masked.count(MASK) == 1
        assert (target["instruction"] + target["response"]).count(MASK) == 1
        assert masked.replace(MASK, target["truth"], 1) == original[field]
        assert original[field].index(target["truth"]) == masked.index(MASK)  # the first occurrence


def test_targets_stop_at_the_limit():
    assert len(reconstruction_targets(demo_records(domain="medical", n=10, seed=1), limit=3)) == 3


def test_candidates_contain_every_truth_and_have_the_requested_size():
    records = demo_records(domain="medical", n=10, seed=1)
    truths = [target["truth"] for target in reconstruction_targets(records, limit=10)]
    candidates = candidate_names(records, extra=truths, size=100, seed=0)
    assert len(candidates) == 100 == len(set(candidates))
    assert set(truths) <= set(candidates)
    assert candidate_names(records, extra=truths, size=100, seed=0) == candidates


def test_name_in_takes_the_first_name_like_words():
    assert name_in(" Jones , this is") == "Jones"
    assert name_in("thanks , Mary Smith .") == "Mary Smith"
    assert name_in(", , .") == ""


@pytest.mark.slow
def test_memorising_model_reconstructs_names_better_than_random_guessing():
    setup = memorised()
    report = reconstruction_report(setup.model, setup.tokenizer, setup.train, limit=20, candidate_set_size=100)
    assert report["n_targets"] == 20 and report["candidate_set_size"] == 100
    assert report["random_guess_rate"] == report["expected_random_top1_rate"] == 0.01
    assert report["likelihood_top1_rate"] >= 0.2 > 5 * report["random_guess_rate"]
    assert report["likelihood_top5_rate"] >= report["likelihood_top1_rate"]
    assert 0 <= report["generation_exact_rate"] <= 1
    assert len(report["examples"]) == 5 and all(MASK in row["masked_text"] for row in report["examples"])


@pytest.mark.slow
def test_untrained_model_ranks_the_truth_first_rarely():
    setup = memorised()
    targets = reconstruction_targets(setup.train, limit=20)
    candidates = candidate_names(setup.train, extra=[t["truth"] for t in targets], size=100)
    hits = sum(reconstruct_by_likelihood(setup.base, setup.tokenizer, t, candidates)[0] == t["truth"] for t in targets)
    assert hits <= 3


@pytest.mark.slow
def test_likelihood_ranking_follows_whole_record_logprobs_of_the_plain_definition():
    setup = memorised()
    targets = reconstruction_targets(setup.train, limit=4)
    # the records' own names: in the tiny vocabulary, one to three tokens long
    candidates = candidate_names(setup.train, extra=[t["truth"] for t in targets], size=12)
    for target in targets:
        ranked = reconstruct_by_likelihood(setup.model, setup.tokenizer, target, candidates, batch_size=5)
        scores = plain_record_logprobs(setup.model, setup.tokenizer, [_filled(target, name) for name in ranked],
                                       max_length=RECONSTRUCTION_MAX_LENGTH)
        assert sorted(ranked) == sorted(candidates)
        assert all(better >= worse - 1e-4 for better, worse in pairwise(scores))
