"""Secret Sharer canaries: distinct random secrets, and exposure near its maximum for a
canary the model memorised, low for one it never saw."""
import math

import pytest

from evaluation.canary import exposure, exposure_report
from privacy.canary import CANARY_INSTRUCTION, CANARY_MAX_LENGTH, SPACE_SIZE, canary_record, canary_records, secret_text
from evaluation.scoring import response_logprobs
from privacy.dp.train import examples_tokenize
from tests.evaluation.memorised import memorised
from tests.evaluation.test_scoring import plain_logprobs


def test_canary_records_have_distinct_six_digit_secrets_and_repeat_for_a_seed():
    canaries = canary_records(50, seed=1)
    secrets = [canary["secret"] for canary in canaries]
    assert len(set(secrets)) == 50
    assert all(len(secret) == 6 and secret.isdigit() for secret in secrets)
    assert canary_records(50, seed=1) == canaries and canary_records(50, seed=2) != canaries
    assert all(canary["instruction"] == CANARY_INSTRUCTION and secret_text(canary["secret"]) in canary["response"]
               for canary in canaries)


def test_secret_is_written_one_digit_per_word():
    assert secret_text("004217") == "0 0 4 2 1 7"


@pytest.mark.slow
def test_exposure_is_high_for_a_memorised_canary_and_low_for_an_unseen_one():
    setup = memorised()
    seen = exposure(setup.model, setup.tokenizer, setup.canary, reference_sample=500)
    unseen = exposure(setup.model, setup.tokenizer, setup.unseen_canary, reference_sample=500)
    assert seen["exposure"] > math.log2(SPACE_SIZE) - 3
    assert unseen["exposure"] < 8
    for row in (seen, unseen):
        assert row["reference_sample"] == 500
        assert row["estimated_rank"] == 1 + (row["rank_in_sample"] - 1) * SPACE_SIZE / 500
        assert row["exposure"] == pytest.approx(math.log2(SPACE_SIZE) - math.log2(row["estimated_rank"]))


@pytest.mark.slow
def test_exposure_report_summarises_every_canary():
    setup = memorised()
    report = exposure_report(setup.model, setup.tokenizer, [setup.canary, setup.unseen_canary], reference_sample=200)
    values = [row["exposure"] for row in report["canaries"]]
    assert report["max_exposure"] == max(values) and report["mean_exposure"] == pytest.approx(sum(values) / 2)
    assert report["max_possible_exposure"] == pytest.approx(math.log2(10**6))
    assert report["n_canaries"] == 2 and report["mean_exposure_interval"]["n"] == 2
    # t(0.975, 1 df) = 12.706: two canaries give a wide interval, clipped to the possible exposures
    half_width = 12.706 * abs(values[0] - values[1]) / math.sqrt(2) / math.sqrt(2)
    assert report["mean_exposure_interval"]["low"] == pytest.approx(
        max(report["mean_exposure"] - half_width, math.log2(10**6) - math.log2(10**6 + 1)), abs=1e-2)
    assert report["mean_exposure_interval"]["high"] == pytest.approx(
        min(report["mean_exposure"] + half_width, math.log2(10**6)), abs=1e-2)


@pytest.mark.slow
def test_canary_scores_sharing_the_sentence_prefix_equal_the_plain_definition():
    setup = memorised()
    records = [setup.canary] + [canary_record(secret) for secret in ("000000", "123456", "999999", "480213")]
    plain = [sum(row) for row in plain_logprobs(setup.model, examples_tokenize(records, setup.tokenizer,
                                                                              max_length=CANARY_MAX_LENGTH))]
    assert response_logprobs(setup.model, setup.tokenizer, records, max_length=CANARY_MAX_LENGTH,
                             batch_size=2) == pytest.approx(plain, abs=1e-4)
    assert exposure(setup.model, setup.tokenizer, setup.canary, reference_sample=50)["log_prob"] == pytest.approx(
        plain[0], abs=1e-4)


def test_exposure_interval_maps_the_fraction_above_to_bits():
    from evaluation.canary import exposure_interval
    top = exposure_interval(0, 1000)
    assert top["high"] == pytest.approx(math.log2(SPACE_SIZE))  # nothing above: it may be first in all of R
    assert top["low"] == pytest.approx(math.log2(SPACE_SIZE) - math.log2(1 + top_rate_high(0, 1000) * SPACE_SIZE))
    middle = exposure_interval(500, 1000)
    assert middle["low"] < 1 < middle["high"] < 1.2  # q about 0.5: 1 bit
    assert exposure_interval(5, 100)["high"] - exposure_interval(5, 100)["low"] > \
        exposure_interval(50, 1000)["high"] - exposure_interval(50, 1000)["low"]  # more references, narrower
    assert exposure_interval(0, 0)["low"] is None


def top_rate_high(higher, n):
    from evaluation.intervals import wilson_interval
    return wilson_interval(higher, n)["high"]


@pytest.mark.slow
def test_exposure_in_looks_stops_when_resolved_and_equals_the_fixed_sample_it_used():
    """A canary the model never saw is resolved before the cap; the memorised one runs to it (its
    interval reaches log2 |R|). Either way its figures are those of its first n references."""
    setup = memorised()
    cap = 400
    seen = exposure(setup.model, setup.tokenizer, setup.canary, reference_sample=cap, looks=3)
    assert seen["reference_sample"] == cap and seen["sample"]["decision"] == "undecided"
    assert seen["exposure_interval"]["high"] == pytest.approx(math.log2(SPACE_SIZE))
    stopped = [exposure(setup.model, setup.tokenizer, canary, reference_sample=cap, looks=3, seed=seed)
               for seed, canary in enumerate(canary_records(6, seed=11))]
    assert any(row["reference_sample"] < cap and row["sample"]["decision"] == "resolved" for row in stopped)
    for row in stopped:
        interval = row["exposure_interval"]
        assert interval["low"] <= row["exposure"] <= interval["high"]
        if row["sample"]["decision"] == "resolved":
            assert interval["high"] - interval["low"] <= 1.0
    # the rank at the look it stopped at is the rank among exactly its first n references
    row, seed = next((row, seed) for seed, row in enumerate(stopped) if row["reference_sample"] < cap)
    import random
    from privacy.canary import secret_at
    canary = canary_records(6, seed=11)[seed]
    drawn = [secret_at(i) for i in random.Random(seed).sample(range(SPACE_SIZE), cap + 1)]
    references = [s for s in drawn if s != canary["secret"]][: row["reference_sample"]]
    scores = response_logprobs(setup.model, setup.tokenizer, [canary_record(s) for s in [canary["secret"], *references]],
                               max_length=CANARY_MAX_LENGTH)
    assert row["rank_in_sample"] == 1 + sum(score > scores[0] for score in scores[1:])
