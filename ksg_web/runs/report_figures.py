"""The sample size and 95% interval beside each headline figure of the run report, and the one way
a figure is written with them: "0.693 [0.58, 0.80], n 60+30".

An evaluation gives each rate and mean its interval (evaluation.intervals): {"low", "high", "n",
"method", "confidence"}, an AUC's also "n_pos" and "n_neg". INTERVAL_PATHS says where the
interval of a report.HEADLINE_PATHS figure is. Beside such a figure `name` a report row carries
`name_low`, `name_high` and `name_n` (the sample size as text: "40", or members+non-members for
an AUC, "60+30", or held-out private+synthetic texts for a fidelity figure: with "/" a
spreadsheet opening the CSV would read "6/6" as a date). An
evaluation from before the intervals has none: the three are None and the figure is written with
"no interval (older evaluation)". A sample too small for an interval (one canary, one record)
has an n and no bounds. Missing pieces never raise.

Kept apart from report.py (which gathers the report and would pass 400 lines) so that the page's
`{% figure %}` tag, the comparison page, the CSV and ksg_evaluate write a figure the same way.
"""
import math
from typing import Any

# evaluation.fidelity's figures (repeated here so that the web process does not import the model code)
FIDELITY_FIGURES = ("mauve", "precision", "recall", "density", "coverage")
# where each headline figure's interval is in an evaluation.json (parallel to report.HEADLINE_PATHS)
INTERVAL_PATHS = {
    "membership_auc_loss": ("privacy", "membership", "loss", "auc_interval"),
    "membership_auc_min_k": ("privacy", "membership", "min_k", "auc_interval"),
    "tpr_at_1pct_fpr_loss": ("privacy", "membership", "loss", "tpr_at_1pct_fpr_interval"),
    "tpr_at_1pct_fpr_min_k": ("privacy", "membership", "min_k", "tpr_at_1pct_fpr_interval"),
    "reconstruction_top1_rate": ("privacy", "reconstruction", "likelihood_top1_interval"),
    "reconstruction_top5_rate": ("privacy", "reconstruction", "likelihood_top5_interval"),
    "reconstruction_generation_exact_rate": ("privacy", "reconstruction", "generation_exact_interval"),
    "canary_mean_exposure": ("privacy", "canaries", "mean_exposure_interval"),
    "heldout_loss_target": ("utility", "heldout_loss", "target", "loss_interval"),
    "heldout_loss_base": ("utility", "heldout_loss", "base", "loss_interval"),
    "rouge_l_target": ("utility", "rouge_l", "target", "mean_interval"),
    "rouge_l_base": ("utility", "rouge_l", "base", "mean_interval"),
    "win_rate": ("utility", "win_rate", "win_rate_interval"),
    "judge_consistency": ("utility", "win_rate", "consistency_interval"),
    "ifd_synthetic": ("utility", "ifd", "synthetic", "mean_interval"),
    "ifd_private": ("utility", "ifd", "private", "mean_interval"),
    **{f"fidelity_{name}": ("utility", "fidelity", f"{name}_interval") for name in FIDELITY_FIGURES},
}
# figures an evaluation may decline to give, and where it says why: the sentence is written in the
# figure's place (a win-rate from a judge that picks by position measures the position, not the answers)
PROBLEM_PATHS = {"win_rate": ("utility", "win_rate", "problem")}
# a win-rate judged in one answer order only, before evaluation.utility judged both: its judge's
# position bias was never measured, so it is not given either
ONE_ORDER_JUDGE = ("the judge saw each pair in one answer order only (an evaluation from before the "
                   "position-consistent judge), so the win-rate may measure the judge's position bias; evaluate again")
# the figures sampled until their interval decides (evaluation.sequential): where each sample's
# account is, and what it is called; a row carries `<sample>_sample` ("8 of 30 targets, look 1 of 3")
# and `<sample>_stop_reason` (the sentence) beside the figures it carries
SAMPLE_PATHS = {"reconstruction": ("privacy", "reconstruction", "sample"),
                "membership": ("privacy", "membership", "sample"),
                "judge": ("utility", "win_rate", "sample")}
SAMPLE_LABELS = {"reconstruction": "name reconstruction (top-1, top-5, generation)",
                 "membership": "membership inference (AUC, TPR)",
                 "judge": "judge (win-rate, consistency; ROUGE-L on the same answers)"}
INTERVAL_KEYS = ("low", "high", "n")
FIGURE_DIGITS = {"canary_mean_exposure": 2}  # bits; every other figure with 3 decimals
MISSING, OLDER_EVALUATION = "—", "no interval (older evaluation)"


def headline_intervals(evaluation: dict | None) -> dict[str, Any]:
    """`<figure>_low`, `<figure>_high` (None where not finite) and `<figure>_n` (text) for every
    INTERVAL_PATHS figure of an evaluation.json; all None where it has no such interval."""
    row: dict[str, Any] = {}
    for name, path in INTERVAL_PATHS.items():
        interval = _dig(evaluation, path)
        if not isinstance(interval, dict):
            interval = {}
        row |= {f"{name}_low": _finite(interval.get("low")), f"{name}_high": _finite(interval.get("high")),
                f"{name}_n": _sample_size(interval)}
    return row


def headline_problems(evaluation: dict | None) -> dict[str, Any]:
    """`<figure>_problem` for every PROBLEM_PATHS figure of an evaluation.json: the evaluation's
    sentence, ONE_ORDER_JUDGE for a win-rate judged in one order only, else None."""
    row: dict[str, Any] = {}
    for name, path in PROBLEM_PATHS.items():
        problem = _dig(evaluation, path)
        result = _dig(evaluation, path[:-1])
        if not problem and name == "win_rate" and isinstance(result, dict) and "consistency" not in result:
            problem = ONE_ORDER_JUDGE
        row[f"{name}_problem"] = problem if isinstance(problem, str) and problem else None
    return row


def headline_samples(evaluation: dict | None) -> dict[str, Any]:
    """`<sample>_sample` (the size used, of the cap, and the looks: "8 of 30 targets, look 1 of 3
    planned") and `<sample>_stop_reason` (why it stopped, in words) for every SAMPLE_PATHS sample of
    an evaluation.json; None for an evaluation from before the sequential sampling (fixed sizes)."""
    row: dict[str, Any] = {}
    for name, path in SAMPLE_PATHS.items():
        sample = _dig(evaluation, path)
        sample = sample if isinstance(sample, dict) else {}
        n, cap, looks, planned = (sample.get(key) for key in ("n", "cap", "looks", "planned_looks"))
        reason = sample.get("reason")
        size = (f"{n} of {cap} {sample.get('unit') or ''}".rstrip() + f", look {looks} of {planned} planned"
                if all(_is_count(value) for value in (n, cap, looks, planned)) else None)
        row |= {f"{name}_sample": size, f"{name}_stop_reason": reason if isinstance(reason, str) and reason else None}
    return row


def sample_lines(row: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, "stopped at ... ") for each sample of a report row that has its stop reason."""
    return [(SAMPLE_LABELS[name], row[f"{name}_stop_reason"]) for name in SAMPLE_PATHS
            if row.get(f"{name}_stop_reason")]


def interval_columns(columns: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """The comparison columns (row key, header) with, right after each figure that has an
    interval, its `_low`, `_high` and `_n` columns ("<header> 95% low", "... 95% high", "... n"),
    and after a figure that may be declined, its `_problem` column ("<header>: why not given")."""
    expanded = []
    for key, header in columns:
        expanded.append((key, header))
        if key in INTERVAL_PATHS:
            expanded += [(f"{key}_low", f"{header} 95% low"), (f"{key}_high", f"{header} 95% high"),
                         (f"{key}_n", f"{header} n")]
        if key in PROBLEM_PATHS:
            expanded.append((f"{key}_problem", f"{header}: why not given"))
    return tuple(expanded)


def figure_problem(row: dict[str, Any], name: str) -> str | None:
    """Why the figure `name` of a report row is not given (PROBLEM_PATHS), or None."""
    problem = row.get(f"{name}_problem")
    return problem if isinstance(problem, str) and problem else None


def figure_parts(row: dict[str, Any], name: str) -> tuple[str, str | None]:
    """A figure of a report row and its interval as text: ("0.693", "[0.58, 0.80], n 60+30").
    ("—", None) where the figure is missing; the interval part says "no interval (older
    evaluation)" where the row has none, "n 1: too few for an interval" where the sample was;
    ("not given: <why>", None) where the evaluation declined the figure (figure_problem)."""
    problem = figure_problem(row, name)
    if problem:
        return f"not given: {problem}", None
    value = row.get(name)
    if not _is_number(value) or not math.isfinite(value):
        return MISSING, None
    digits = FIGURE_DIGITS.get(name, 3)
    text = _fixed(value, digits)
    if name not in INTERVAL_PATHS:
        return text, None
    low, high, n = (row.get(f"{name}_{key}") for key in INTERVAL_KEYS)
    if n is None:
        return text, OLDER_EVALUATION
    if low is None or high is None:
        return text, f"n {n}: too few for an interval"
    bound_digits = max(digits - 1, 1)
    return text, f"[{_fixed(low, bound_digits)}, {_fixed(high, bound_digits)}], n {n}"


def figure_text(row: dict[str, Any], name: str) -> str:
    """figure_parts as one line: "0.693 [0.58, 0.80], n 60+30", or "—"."""
    value, interval = figure_parts(row, name)
    return value if interval is None else f"{value} {interval}"


def _fixed(value: float, digits: int) -> str:
    """`value` with `digits` decimals, never "-0.0" (a bound a hair below 0 is written 0)."""
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def _sample_size(interval: dict) -> str | None:
    """The interval's n as text: "members+non-members" for an AUC, "private+synthetic" for a
    fidelity figure, else the count."""
    n_pos, n_neg, n = interval.get("n_pos"), interval.get("n_neg"), interval.get("n")
    if _is_count(n_pos) and _is_count(n_neg):
        return f"{n_pos}+{n_neg}"
    n_private, n_synthetic = interval.get("n_private"), interval.get("n_synthetic")
    if _is_count(n_private) and _is_count(n_synthetic):
        return f"{n_private}+{n_synthetic}"
    return str(n) if _is_count(n) else None


def _dig(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _finite(value: Any) -> float | None:
    return float(value) if _is_number(value) and math.isfinite(value) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
