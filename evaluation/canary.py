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
"""
import math
import random

from privacy.canary import CANARY_MAX_LENGTH, SPACE_SIZE, secret_at, canary_record

from .intervals import mean_interval
from .scoring import response_logprobs


def exposure(model, tokenizer, canary: dict, *, reference_sample: int = 1000, seed: int = 0,
             batch_size: int = 64) -> dict:
    """Exposure (bits) of canary["secret"], its rank estimated from `reference_sample` other
    secrets drawn uniformly without replacement (see the module docstring). Log-probs are of
    the response given the instruction's chat prompt, in nats."""
    rng = random.Random(seed)
    references = []
    for index in rng.sample(range(SPACE_SIZE), min(reference_sample + 1, SPACE_SIZE)):
        if secret_at(index) != canary["secret"] and len(references) < reference_sample:
            references.append(secret_at(index))
    records = [canary_record(canary["secret"])] + [canary_record(secret) for secret in references]
    scores = response_logprobs(model, tokenizer, records, max_length=CANARY_MAX_LENGTH, batch_size=batch_size)
    higher = sum(score > scores[0] for score in scores[1:])
    estimated_rank = 1 + higher * SPACE_SIZE / len(references)
    return {
        "secret": canary["secret"],
        "log_prob": scores[0],
        "rank_in_sample": 1 + higher,   # exact: 1 = the canary beats every sampled secret
        "reference_sample": len(references),
        "estimated_rank": estimated_rank,
        "exposure": math.log2(SPACE_SIZE) - math.log2(estimated_rank),
    }


# the values exposure() can take: the rank estimate lies between 1 and 1 + |R| (h = m)
EXPOSURE_RANGE = (math.log2(SPACE_SIZE) - math.log2(1 + SPACE_SIZE), math.log2(SPACE_SIZE))


def exposure_report(model, tokenizer, canaries: list[dict], *, reference_sample: int = 1000, seed: int = 0) -> dict:
    """Per-canary exposure (bits), their mean with its 95% t interval over the canaries (None
    bounds below two canaries; clipped to EXPOSURE_RANGE), their max, how many canaries, and the
    largest possible exposure, log2 |R|."""
    rows = [exposure(model, tokenizer, canary, reference_sample=reference_sample, seed=seed + index)
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
    }
