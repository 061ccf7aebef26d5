"""The paper's comparison, as differences with intervals: KnowledgeSG against `self_instruct`
(what the private data adds: the same stages 2-5 without the DP adapter) and against
`nonprivate` (what privacy costs: the private records used with no protection), per figure.

Each difference is KnowledgeSG's figure minus the other run's, with the 95% interval of that
difference computed from the two figures' own intervals (evaluation.intervals.difference_interval,
MOVER). The runs are evaluated on the same held-out records, so the figures are paired, and
treating them as independent makes the interval wider, never narrower. Where the interval
excludes 0 the reading says which way the difference goes in words; where it includes 0 it says
that this evaluation shows no difference (not that there is none). A figure without an interval
on either side (an older evaluation, an uninformative judge, a sample too small) gives no
difference and says why. Plain data; no views here.
"""
from typing import Any

from evaluation.intervals import difference_interval

from .report import BASELINE_LABELS

METHOD = "knowledgesg"
AGAINST = (
    ("self_instruct", "what the private data adds (the same synthesis from the base model, no DP adapter)"),
    ("nonprivate", "what privacy costs (the private records used with no protection)"),
)
# (report row key, label, which way is better for KnowledgeSG: "higher" or "lower")
DIFFERENCE_FIGURES = (
    ("heldout_loss_target", "held-out loss (nats per token)", "lower"),
    ("rouge_l_target", "ROUGE-L against the held-out answers", "higher"),
    ("win_rate", "win-rate against the base model", "higher"),
    ("fidelity_mauve", "MAUVE of the synthetic instructions to the held-out private ones", "higher"),
    ("fidelity_coverage", "coverage of the held-out private instructions by the synthetic ones", "higher"),
    ("membership_auc_loss", "membership AUC (loss)", "lower"),
    ("reconstruction_top1_rate", "name reconstruction top-1", "lower"),
    ("canary_mean_exposure", "canary mean exposure (bits)", "lower"),
)


def report_differences(comparison: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each baseline of AGAINST that has an evaluated row in `comparison` (report_comparison's
    rows) beside an evaluated KnowledgeSG row: {"against", "against_label", "question",
    "method_run", "other_run", "figures": [{"name", "label", "better", "method", "other",
    "difference", "low", "high", "reading"}]}. Empty without an evaluated KnowledgeSG row."""
    rows = {row["baseline"]: row for row in comparison if row.get("evaluated")}
    method = rows.get(METHOD)
    if method is None:
        return []
    return [
        {"against": baseline, "against_label": BASELINE_LABELS[baseline], "question": question,
         "method_run": method["run"], "other_run": rows[baseline]["run"],
         "figures": [_figure(method, rows[baseline], name, label, better) for name, label, better in DIFFERENCE_FIGURES]}
        for baseline, question in AGAINST if baseline in rows
    ]


def _figure(method: dict, other: dict, name: str, label: str, better: str) -> dict[str, Any]:
    result = {"name": name, "label": label, "better": better, "method": method.get(name), "other": other.get(name),
              "difference": None, "low": None, "high": None}
    missing = [side for side, row in (("KnowledgeSG", method), ("the other run", other))
               if any(row.get(key) is None for key in (name, f"{name}_low", f"{name}_high"))]
    if missing:
        verb = "have" if len(missing) > 1 else "has"
        return result | {"reading": f"no difference computed: {' and '.join(missing)} {verb} no figure with an interval"}
    interval = difference_interval(method[name], method[f"{name}_low"], method[f"{name}_high"],
                                   other[name], other[f"{name}_low"], other[f"{name}_high"])
    result |= {"difference": interval["difference"], "low": interval["low"], "high": interval["high"]}
    return result | {"reading": _reading(interval, better)}


def _reading(interval: dict, better: str) -> str:
    if interval["low"] <= 0 <= interval["high"]:
        return "no difference shown (the interval includes 0)"
    higher = interval["low"] > 0
    verdict = "better" if (higher and better == "higher") or (not higher and better == "lower") else "worse"
    return f"KnowledgeSG {'higher' if higher else 'lower'}: {verdict}"
