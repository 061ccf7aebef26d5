"""Fidelity of the synthetic data to the private data: are the synthetic instructions spread like
the private ones? This is what KnowledgeSG's stages 1-2 are for (the DP adapter carries the
private distribution into the instructions it samples); `self_instruct`, sampled from the base
model alone, is the figure to beat.

Measured on the client side, against the instructions of the dataset's held-out split (records no
model was trained on), so nothing private leaves. Both sets of texts are embedded by a local model
(text_embeddings: the base model W_Loc's last hidden state, mean-pooled over the text's tokens),
then compared as two clouds of points:

- MAUVE (Pillutla et al., NeurIPS 2021; the authors' `mauve-text` package): both clouds are
  quantised together into `buckets` k-means clusters, and MAUVE is the area under the divergence
  curve between the two histograms, in [0, 1]; 1 = the same distribution. p = held-out private,
  q = synthetic. With a few dozen texts the choice of buckets matters: one per TEXTS_PER_BUCKET
  texts of the smaller side (at least 2), not the package's n / 10 (2 or 3 buckets for 25 texts).
  On simulated embeddings, 25 against 40 points, 30 draws: a cloud shifted by half its standard
  deviation in every coordinate scored 0.96 +- 0.05 against 0.97 for the unshifted one with 3
  buckets, 0.84 +- 0.14 against 0.93 +- 0.06 with 5. The price: two samples of one distribution
  score below 1 at these sizes, so compare runs with each other, on the same held-out split, and
  read the k-NN figures beside it.
- precision, recall, density, coverage (Naeem et al., ICML 2020; their `prdc` package), with
  k-nearest-neighbour balls (k = NEAREST_K): precision, the share of synthetic texts inside the
  private texts' balls (realism); recall, the share of private texts inside the synthetic texts'
  balls (diversity); density, how many private balls hold a synthetic text, on average, over k
  (about 1 for the same distribution, can exceed 1); coverage, the share of private texts with a
  synthetic text inside their own ball.

Each figure has a 95% percentile-bootstrap interval: both sides resampled with replacement,
MAUVE_RESAMPLES times for MAUVE (a PCA and a k-means per resample), PRDC_RESAMPLES times for the
others (from the distances computed once; a record drawn twice is never its own neighbour, which
would shrink its ball to nothing). MAUVE's resamples lie mostly below its point estimate (a
resample's histogram is noisier than the sample's, and noise lowers MAUVE), so its interval
reaches low: at a few dozen texts it shows how little one MAUVE pins down. The numerical
libraries run on one thread meanwhile: on matrices this small more threads only wait for each
other (one MAUVE took 0.5-0.9 s on two busy cores with them, 0.01 s without).

Personal details are masked on both sides before embedding (privacy.pii's detector, "[NAME]",
"[ID]"): the filter stage masks them in the synthetic instructions, and a comparison of masked
against unmasked texts would measure the masking, not the distribution.

Fewer than MIN_TEXTS distinct texts on a side give every figure None and a `problem` sentence
instead: an evaluation never prints a number that means nothing.

No Django here: plain texts and arrays in, plain data out.
"""
import contextlib
import io
import os
import sys
import tempfile
import threading
from importlib import metadata

import mauve
import numpy as np
import prdc
import torch
from sklearn.metrics import pairwise_distances
from threadpoolctl import threadpool_limits

from privacy.pii import pii_find_many, pii_redact

ENCODER_POOLING = "mean-pooled last hidden state"
MIN_TEXTS = 10            # distinct texts per side, below which no figure is given
TEXTS_PER_BUCKET = 5      # MAUVE's quantisation: one k-means bucket per 5 texts of the smaller side
MAUVE_SCALING_FACTOR = 5  # the package's default constant c of the divergence curve
NEAREST_K = 3             # the k of the k-NN balls; Naeem et al. use 5 with thousands of samples
MAUVE_RESAMPLES = PRDC_RESAMPLES = 200
CONFIDENCE = 0.95
PRDC_FIGURES = ("precision", "recall", "density", "coverage")
FIGURES = ("mauve", *PRDC_FIGURES)
BOOTSTRAP = "percentile bootstrap"
PII_MASKING = "personal details masked on both sides before embedding ([NAME], [ID], ...)"
# faiss warns on its native stderr for every clustering of fewer than 39 points per centroid,
# which is every clustering here: hundreds of lines per evaluation would bury the worker's log
FAISS_SMALL_SAMPLE_WARNING = b"WARNING clustering"
_STDERR_REDIRECT = threading.Lock()  # fd 2 is the process's: one thread redirects it at a time


def text_embeddings(model, tokenizer, texts: list[str], *, max_length: int, batch_size: int = 16) -> np.ndarray:
    """One row per text: the model's last hidden state (after its final norm), averaged over the
    text's first `max_length` tokens, padding excluded; fp32, shape (len(texts), hidden size).
    Padded on the right, so that a text's positions, and its vector, do not depend on its batch;
    batched by length, so that little of the work is padding."""
    decoder = _decoder(model)
    device = next(model.parameters()).device
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    order = sorted(range(len(texts)), key=lambda index: len(encoded[index]))
    embeddings = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        chosen = order[start:start + batch_size]
        batch = tokenizer.pad({"input_ids": [encoded[index] for index in chosen]}, padding=True,
                              padding_side="right", return_tensors="pt")
        mask = batch["attention_mask"].to(device)
        with torch.inference_mode():
            hidden = decoder(input_ids=batch["input_ids"].to(device), attention_mask=mask).last_hidden_state.float()
        weights = mask.unsqueeze(-1).float()
        embeddings[chosen] = ((hidden * weights).sum(1) / weights.sum(1).clamp(min=1)).cpu().numpy()
    return embeddings


def fidelity_of_texts(model, tokenizer, private_texts: list[str], synthetic_texts: list[str], *, encoder: str,
                      max_length: int, seed: int = 0) -> dict:
    """fidelity_report of the synthetic texts against the private ones, both embedded by `model`
    (text_embeddings); `encoder` names it in the result (a model spec). Empty texts are left out."""
    private = _pii_masked([text.strip() for text in private_texts if isinstance(text, str) and text.strip()])
    synthetic = _pii_masked([text.strip() for text in synthetic_texts if isinstance(text, str) and text.strip()])
    result = {"encoder": f"{encoder}: {ENCODER_POOLING} (fp32)", "pii": PII_MASKING}
    problem = _too_few(len(set(private)), len(set(synthetic)))
    if problem:
        return result | fidelity_unmeasured(problem, n_private=len(private), n_synthetic=len(synthetic))
    return result | fidelity_report(text_embeddings(model, tokenizer, private, max_length=max_length),
                                    text_embeddings(model, tokenizer, synthetic, max_length=max_length), seed=seed)


def _pii_masked(texts: list[str]) -> list[str]:
    return [pii_redact(text, spans=spans) for text, spans in zip(texts, pii_find_many(texts))]


def fidelity_report(private_embeddings: np.ndarray, synthetic_embeddings: np.ndarray, *, seed: int = 0) -> dict:
    """MAUVE (p = private, q = synthetic) and precision, recall, density, coverage of two sets
    of embeddings (rows = texts), each figure with `<figure>_interval` ({"low", "high", "n",
    "n_private", "n_synthetic", "method", "resamples", "confidence"}) and the settings used;
    every figure None with a `problem` sentence where a side has fewer than MIN_TEXTS distinct rows.
    All figures are dimensionless, in [0, 1] except density (>= 0). Seeded: the same input gives
    the same report."""
    private = np.asarray(private_embeddings, dtype=np.float64)
    synthetic = np.asarray(synthetic_embeddings, dtype=np.float64)
    n_private, n_synthetic = len(private), len(synthetic)
    problem = _too_few(_distinct_rows(private), _distinct_rows(synthetic))
    if problem:
        return fidelity_unmeasured(problem, n_private=n_private, n_synthetic=n_synthetic)
    buckets = mauve_buckets(n_private, n_synthetic)
    rng = np.random.default_rng(seed)
    with threadpool_limits(limits=1), _faiss_warnings_dropped():
        with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the two sample sizes
            figures = {name: float(value) for name, value in prdc.compute_prdc(
                real_features=private, fake_features=synthetic, nearest_k=NEAREST_K).items()}
        figures["mauve"] = _mauve(private, synthetic, buckets=buckets, seed=seed)
        replicates = _prdc_bootstrap(private, synthetic, rng) | {
            "mauve": _mauve_bootstrap(private, synthetic, rng, buckets=buckets, seed=seed)}
    report = {"n_private": n_private, "n_synthetic": n_synthetic, "problem": None, "mauve_buckets": buckets,
              "mauve_scaling_factor": MAUVE_SCALING_FACTOR, "nearest_k": NEAREST_K, "min_texts": MIN_TEXTS,
              "seed": seed, "libraries": _library_versions()}
    for name in FIGURES:
        report[name] = figures[name]
        report[f"{name}_interval"] = _percentile_interval(replicates[name], n_private, n_synthetic)
    return report


def fidelity_unmeasured(problem: str, *, n_private: int = 0, n_synthetic: int = 0) -> dict:
    """The shape of fidelity_report with every figure and interval None and `problem` saying why,
    in words ("not applicable: ..." where the model has no synthetic data)."""
    return {"n_private": n_private, "n_synthetic": n_synthetic, "problem": problem, "min_texts": MIN_TEXTS,
            **{name: None for name in FIGURES}, **{f"{name}_interval": None for name in FIGURES}}


def mauve_buckets(n_private: int, n_synthetic: int) -> int:
    """MAUVE's number of k-means buckets: one per TEXTS_PER_BUCKET texts of the smaller side, at least 2."""
    return max(2, min(n_private, n_synthetic) // TEXTS_PER_BUCKET)


def prdc_resampled(distances: dict[str, np.ndarray], private_index: np.ndarray, synthetic_index: np.ndarray, *,
                   nearest_k: int = NEAREST_K) -> dict[str, float]:
    """Precision, recall, density and coverage (prdc.compute_prdc's definitions) of the rows
    `private_index` and `synthetic_index` (indices, repeats allowed) of two sets, from their
    distance matrices {"private", "synthetic", "cross"} (private x private, synthetic x synthetic,
    private x synthetic). A point's ball reaches its k-th nearest other record: copies of the
    point itself are not neighbours. With every index once, this is compute_prdc's result."""
    private_radii = _kth_neighbour_distance(distances["private"], private_index, nearest_k)
    synthetic_radii = _kth_neighbour_distance(distances["synthetic"], synthetic_index, nearest_k)
    cross = distances["cross"][np.ix_(private_index, synthetic_index)]
    inside_private_balls = cross < private_radii[:, None]
    return {"precision": float(inside_private_balls.any(axis=0).mean()),
            "recall": float((cross < synthetic_radii[None, :]).any(axis=1).mean()),
            "density": float(inside_private_balls.sum(axis=0).mean() / nearest_k),
            "coverage": float((cross.min(axis=1) < private_radii).mean())}


def _kth_neighbour_distance(distances: np.ndarray, index: np.ndarray, k: int) -> np.ndarray:
    """Per drawn point, the distance to its k-th nearest drawn point that is another record."""
    sub = distances[np.ix_(index, index)].copy()
    sub[index[:, None] == index[None, :]] = np.inf
    return np.partition(sub, k - 1, axis=1)[:, k - 1]


def _prdc_bootstrap(private: np.ndarray, synthetic: np.ndarray, rng: np.random.Generator) -> dict[str, list[float]]:
    distances = {"private": pairwise_distances(private), "synthetic": pairwise_distances(synthetic),
                 "cross": pairwise_distances(private, synthetic)}
    replicates: dict[str, list[float]] = {name: [] for name in PRDC_FIGURES}
    while len(replicates["precision"]) < PRDC_RESAMPLES:
        private_index, synthetic_index = rng.integers(len(private), size=len(private)), rng.integers(
            len(synthetic), size=len(synthetic))
        if min(len(np.unique(private_index)), len(np.unique(synthetic_index))) <= NEAREST_K:
            continue  # fewer than k other records to reach: no ball (rare from MIN_TEXTS up)
        for name, value in prdc_resampled(distances, private_index, synthetic_index).items():
            replicates[name].append(value)
    return replicates


def _mauve_bootstrap(private: np.ndarray, synthetic: np.ndarray, rng: np.random.Generator, *, buckets: int,
                     seed: int) -> list[float]:
    return [_mauve(private[rng.integers(len(private), size=len(private))],
                   synthetic[rng.integers(len(synthetic), size=len(synthetic))], buckets=buckets, seed=seed)
            for _ in range(MAUVE_RESAMPLES)]


def _mauve(private: np.ndarray, synthetic: np.ndarray, *, buckets: int, seed: int) -> float:
    return float(mauve.compute_mauve(p_features=private, q_features=synthetic, num_buckets=buckets, seed=seed,
                                     mauve_scaling_factor=MAUVE_SCALING_FACTOR, verbose=False).mauve)


@contextlib.contextmanager
def _faiss_warnings_dropped():
    """faiss's small-sample warning dropped from the process's stderr (fd 2, where its C++ code
    writes); any other line written there meanwhile is written back afterwards."""
    with _STDERR_REDIRECT, tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().splitlines(keepends=True)
                    if not line.startswith(FAISS_SMALL_SAMPLE_WARNING)]
            if kept:
                os.write(2, b"".join(kept))


def _percentile_interval(values: list[float], n_private: int, n_synthetic: int) -> dict:
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return {"low": float(low), "high": float(high), "n": n_private + n_synthetic, "n_private": n_private,
            "n_synthetic": n_synthetic, "method": BOOTSTRAP, "resamples": len(values), "confidence": CONFIDENCE}


def _too_few(distinct_private: int, distinct_synthetic: int) -> str | None:
    if min(distinct_private, distinct_synthetic) >= MIN_TEXTS:
        return None
    return (f"too few texts to compare: {distinct_private} distinct held-out private and {distinct_synthetic} "
            f"distinct synthetic instructions, and the histograms and neighbourhoods behind these figures need "
            f"at least {MIN_TEXTS} on each side")


def _distinct_rows(embeddings: np.ndarray) -> int:
    return len(np.unique(embeddings, axis=0)) if len(embeddings) else 0


def _decoder(model):
    """The transformer body of a causal LM (its last_hidden_state is after the final norm), through PEFT."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.get_decoder()


def _library_versions() -> dict[str, str | None]:
    versions = {}
    for name in ("mauve-text", "prdc", "faiss-cpu"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions
