"""Secret Sharer exposure (Carlini et al. 2019): how far a model singles out a planted secret.

A canary is a training record carrying a random secret s from a space R of |R| = 10^6 secrets.
Rank every secret r in R by the model's log-perplexity of the canary text with r filled in;
exposure(s) = log2 |R| - log2 rank(s). A model that never saw s ranks it near the middle
(exposure about 1 bit); one that memorised it ranks it first (exposure log2 |R|, about 19.9).

Scoring all 10^6 secrets is too slow, so the rank is ESTIMATED from a uniform sample of m other
secrets (the paper's sampling approach): if h of the m sampled secrets score strictly higher
than s, the expected number of higher secrets in R is h * |R| / m, so
    rank_estimate = 1 + h * |R| / m,    exposure = log2 |R| - log2 rank_estimate.
h = 0 gives the maximum, log2 |R|; the resolution is limited to log2(m) bits below it. Ties
count in the canary's favour (strictly higher only).

h / m estimates q, the fraction of R that scores above s, so the exposure has an interval: the
Wilson interval of q mapped through the same formula. The references are drawn in a fixed seeded
order and scored in looks (evaluation.sequential: m/4, m/2, m for 3 looks), each interval at the
looks' Bonferroni level; a canary stops at the first look whose exposure interval is at most
EXPOSURE_RESOLUTION_BITS wide. A secret the model never saw ranks near the middle and is resolved
at the first look (h near m/8 of m/4 gives about [0.8, 1.3] bits), so a private model's canaries
cost a quarter of the scorings; a memorised one (h = 0: the interval reaches log2 |R|) runs to
the cap, where the references set how high its exposure can be shown.
"""
import math
import random

from privacy.canary import CANARY_MAX_LENGTH, SPACE_SIZE, secret_at, canary_record

from .intervals import mean_interval, wilson_interval
from .scoring import response_logprobs
from .sequential import CONTINUE, Decision, look_sizes, sample_until_decided

EXPOSURE_RESOLUTION_BITS = 1.0  # a canary's exposure interval this narrow (or narrower) needs no more references
RESOLVED = "resolved"


def _exposure_bits(higher_fraction: float) -> float:
    """Exposure (bits) of a secret when this fraction of R scores strictly above it."""
    return math.log2(SPACE_SIZE) - math.log2(1 + higher_fraction * SPACE_SIZE)


def exposure_interval(higher: int, references: int, *, confidence: float = 0.95) -> dict:
    """The interval of the exposure estimated from `higher` of `references` sampled secrets scoring
    above the canary: the Wilson interval of that fraction, mapped to bits (its high end gives the
    low exposure). None bounds with no reference."""
    rate = wilson_interval(higher, references, confidence=confidence)
    if rate["low"] is None:
        return rate
    return {**rate, "low": _exposure_bits(rate["high"]), "high": _exposure_bits(rate["low"]),
            "method": f"{rate['method']} interval of the fraction of secrets above it, in bits"}


def _resolution_decision(figure: tuple[int, int], confidence: float) -> Decision:
    higher, references = figure
    interval = exposure_interval(higher, references, confidence=confidence)
    text = (f"{higher} of {references} sampled secrets score above it, exposure interval "
            f"[{interval['low']:.2f}, {interval['high']:.2f}] bits")
    if interval["high"] - interval["low"] <= EXPOSURE_RESOLUTION_BITS:
        return Decision(RESOLVED, f"{text}, at most {EXPOSURE_RESOLUTION_BITS:g} bit wide")
    return Decision(CONTINUE, f"{text}, wider than {EXPOSURE_RESOLUTION_BITS:g} bit")


def exposure(model, tokenizer, canary: dict, *, reference_sample: int = 1000, seed: int = 0,
             batch_size: int = 256, looks: int = 1) -> dict:
    """Exposure (bits) of canary["secret"], its rank estimated from at most `reference_sample`
    other secrets drawn uniformly without replacement (see the module docstring), scored in
    `looks` looks until the exposure's interval is resolved. Log-probs are of the response given
    the instruction's chat prompt, in nats."""
    rng = random.Random(seed)
    references = []
    for index in rng.sample(range(SPACE_SIZE), min(reference_sample + 1, SPACE_SIZE)):
        if secret_at(index) != canary["secret"] and len(references) < reference_sample:
            references.append(secret_at(index))
    scores: list[float] = []

    def score(n: int, confidence: float) -> tuple[int, int]:
        new = ([canary["secret"]] if not scores else []) + references[max(len(scores) - 1, 0):n]
        scores.extend(response_logprobs(model, tokenizer, [canary_record(secret) for secret in new],
                                        max_length=CANARY_MAX_LENGTH, batch_size=batch_size))
        return sum(value > scores[0] for value in scores[1:]), n

    (higher, used), sample = sample_until_decided(look_sizes(len(references), looks), score, _resolution_decision,
                                                  unit="reference secrets")
    estimated_rank = 1 + higher * SPACE_SIZE / used
    return {
        "secret": canary["secret"],
        "log_prob": scores[0],
        "rank_in_sample": 1 + higher,   # exact: 1 = the canary beats every sampled secret
        "reference_sample": used,
        "estimated_rank": estimated_rank,
        "exposure": math.log2(SPACE_SIZE) - math.log2(estimated_rank),
        "exposure_interval": exposure_interval(higher, used, confidence=sample["confidence"]),
        "sample": sample,
    }


# the values exposure() can take: the rank estimate lies between 1 and 1 + |R| (h = m)
EXPOSURE_RANGE = (math.log2(SPACE_SIZE) - math.log2(1 + SPACE_SIZE), math.log2(SPACE_SIZE))


def exposure_report(model, tokenizer, canaries: list[dict], *, reference_sample: int = 1000, seed: int = 0,
                    looks: int = 1) -> dict:
    """Per-canary exposure (bits) with its interval and the references it used, their mean with
    its 95% t interval over the canaries (None bounds below two canaries; clipped to
    EXPOSURE_RANGE), their max, how many canaries, the references scored in all, and the largest
    possible exposure, log2 |R|."""
    rows = [exposure(model, tokenizer, canary, reference_sample=reference_sample, seed=seed + index, looks=looks)
            for index, canary in enumerate(canaries)]
    values = [row["exposure"] for row in rows]
    return {
        "canaries": rows,
        "n_canaries": len(rows),
        "mean_exposure": sum(values) / len(values) if values else None,
        "mean_exposure_interval": mean_interval(values, bounds=EXPOSURE_RANGE),
        "max_exposure": max(values) if values else None,
        "max_possible_exposure": math.log2(SPACE_SIZE),
        "space_size": SPACE_SIZE,
        "reference_cap": reference_sample,
        "references_scored": sum(row["reference_sample"] for row in rows),
        "resolution_bits": EXPOSURE_RESOLUTION_BITS,
    }
