"""The run report: what one run (KnowledgeSG or a baseline) spent, did and measured, as plain
JSON-ready data. No views here: the report page, its JSON and its CSV are all built from
`run_report` and `report_comparison`.

Missing pieces never raise. A run from before the evaluation existed has no `evaluate` child,
an older evaluation.json lacks later figures (canaries) or the intervals beside them: those
values are None, shown as "—" (an interval: "no interval (older evaluation)", report_figures).
Non-finite floats become None (JSON has no NaN or infinity). A non-private release is flagged
`unbounded` with epsilon None and shown as "∞", never as 0.
"""
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from evaluation.private_parts import evaluation_aggregates
from evaluation.verdict import verdict
from jobs.json_safe import json_safe
from jobs.kinds import job_kind_label, job_kinds
from jobs.models import Job, JobEvent
from jobs.selectors import artifact_existing_file, jobs_visible_to
from privacy.models import LedgerEntry

from .kinds import RUN
from .pipeline import run_pipeline
from .report_figures import FIDELITY_FIGURES, PROBLEM_PATHS, headline_intervals, headline_problems, headline_samples

BASELINE_LABELS = {
    "knowledgesg": "KnowledgeSG",
    "dp_direct": "DP fine-tuned model, used directly",
    "self_instruct": "Self-Instruct (base model, no private data)",
    "nonprivate": "Non-private LoRA on the private data",
    "scrubbed": "Non-private LoRA on the PII-scrubbed private data",
}
LOSS_STAGES = ("dp_finetune", "finetune_private", "finetune_target")
EXAMPLE_PAIRS = 5
# file names the stages give their outputs (synthesis.stages, evaluation.stage); repeated here so
# that the web process does not import the model code to read a report
EVALUATION_FILE, PAIRS_FILE, VERDICTS_FILE = "evaluation.json", "synthetic_pairs.jsonl", "verdicts.jsonl"
EVALUATION_RECORDS_FILE = "evaluation_records.json"  # the whole report, client-only (evaluation.stage)
INFINITY, MISSING = "∞", "—"
FILTER_LABELS = {"kept": "kept", "empty_or_malformed": "empty or malformed", "pii": "personal data (PII)",
                 "duplicate": "near-duplicate", "not_relevant": "judged off-domain"}

# headline figures of an evaluation.json: name -> the keys leading to it (their intervals:
# report_figures.INTERVAL_PATHS; a row carries <name>_low, <name>_high, <name>_n beside them)
HEADLINE_PATHS = {
    "membership_auc_loss": ("privacy", "membership", "loss", "auc"),
    "membership_auc_min_k": ("privacy", "membership", "min_k", "auc"),
    "tpr_at_1pct_fpr_loss": ("privacy", "membership", "loss", "tpr_at_1pct_fpr"),
    "tpr_at_1pct_fpr_min_k": ("privacy", "membership", "min_k", "tpr_at_1pct_fpr"),
    "reconstruction_top1_rate": ("privacy", "reconstruction", "likelihood_top1_rate"),
    "reconstruction_top5_rate": ("privacy", "reconstruction", "likelihood_top5_rate"),
    "reconstruction_generation_exact_rate": ("privacy", "reconstruction", "generation_exact_rate"),
    "reconstruction_random_top5_rate": ("privacy", "reconstruction", "expected_random_top5_rate"),
    "canary_mean_exposure": ("privacy", "canaries", "mean_exposure"),
    "canary_max_exposure": ("privacy", "canaries", "max_exposure"),
    "canary_max_possible_exposure": ("privacy", "canaries", "max_possible_exposure"),
    "heldout_loss_target": ("utility", "heldout_loss", "target", "loss"),
    "heldout_loss_base": ("utility", "heldout_loss", "base", "loss"),
    "rouge_l_target": ("utility", "rouge_l", "target", "mean"),
    "rouge_l_base": ("utility", "rouge_l", "base", "mean"),
    "win_rate": ("utility", "win_rate", "win_rate"),
    "judge_consistency": ("utility", "win_rate", "consistency"),
    "ifd_synthetic": ("utility", "ifd", "synthetic", "mean"),
    "ifd_private": ("utility", "ifd", "private", "mean"),
    # fidelity of the synthetic instructions to the held-out private ones (evaluation.fidelity)
    **{f"fidelity_{name}": ("utility", "fidelity", name) for name in FIDELITY_FIGURES},
    "audit_epsilon_lower_bound": ("privacy", "audit", "model", "epsilon_lower_bound"),
    "audit_dp_adapter_epsilon_lower_bound": ("privacy", "audit", "dp_adapter", "epsilon_lower_bound"),
}
# the comparison table's columns, in order: (row key, header); the CSV uses them as they are
COMPARISON_COLUMNS = (
    ("run", "run"), ("baseline", "baseline"), ("status", "status"), ("created", "created"),
    ("dp", "DP guarantee"), ("epsilon_display", "epsilon"), ("delta", "delta"),
    ("membership_auc_loss", "membership AUC (loss)"), ("membership_auc_min_k", "membership AUC (min-k)"),
    ("tpr_at_1pct_fpr_loss", "TPR@1%FPR (loss)"), ("tpr_at_1pct_fpr_min_k", "TPR@1%FPR (min-k)"),
    ("reconstruction_top1_rate", "reconstruction top-1"),
    ("reconstruction_random_guess_rate", "reconstruction random-guess top-1"),
    ("reconstruction_top5_rate", "reconstruction top-5"),
    ("reconstruction_random_top5_rate", "reconstruction random-guess top-5"),
    ("reconstruction_generation_exact_rate", "reconstruction generation exact"),
    ("membership_sample", "membership inference: sample used"),
    ("membership_stop_reason", "membership inference: why sampling stopped"),
    ("reconstruction_sample", "reconstruction: sample used"),
    ("reconstruction_stop_reason", "reconstruction: why sampling stopped"),
    ("canary_mean_exposure", "canary mean exposure (bits)"), ("canary_max_exposure", "canary max exposure (bits)"),
    ("audit_epsilon_lower_bound", "audited epsilon lower bound (95%)"),
    ("audit_dp_adapter_epsilon_lower_bound", "audited epsilon lower bound of the stage-1 adapter (95%)"),
    ("heldout_loss_target", "held-out loss (target)"), ("heldout_loss_base", "held-out loss (base)"),
    ("rouge_l_target", "ROUGE-L (target)"), ("rouge_l_base", "ROUGE-L (base)"), ("win_rate", "win-rate vs base"),
    ("judge_consistency", "judge consistency (answer order swapped)"),
    ("judge_sample", "judge: sample used"), ("judge_stop_reason", "judge: why sampling stopped"),
    ("ifd_synthetic", "IFD (synthetic data)"), ("ifd_private", "IFD (private data)"),
    ("fidelity_mauve", "fidelity: MAUVE (synthetic vs held-out private instructions)"),
    ("fidelity_precision", "fidelity: precision"), ("fidelity_recall", "fidelity: recall"),
    ("fidelity_density", "fidelity: density"), ("fidelity_coverage", "fidelity: coverage"),
    ("fidelity_problem", "fidelity: why no figure"),
)


def run_baseline(run: Job) -> str:
    """KnowledgeSG or the baseline the run is (every run records it: migration runs.0001)."""
    return run.params["baseline"]


def run_report(run: Job, *, records_readable: bool = True, example_pairs: int = EXAMPLE_PAIRS) -> dict[str, Any]:
    """Everything about one run, JSON-ready: the run, its dataset, the privacy it spent (from
    the ledger), its stages' parameters, status and wall time (seconds), the training curves
    (epsilon and loss per step), what the filter kept and dropped, up to `example_pairs`
    synthetic pairs, and its evaluation.json as it is (None if not evaluated). For a reader
    who may not read the dataset's raw records (records_readable=False) the evaluation is its
    aggregates (evaluation.private_parts), read from the server-readable artifact directory;
    for one who may, the whole report, read from the client-only area on the private volume."""
    children = list(run.children.order_by("pk"))
    latest = {child.kind: child for child in children}  # the newest child of each kind
    evaluation_job, evaluation = _evaluation(children, records_readable=records_readable)
    if evaluation is not None and not records_readable:
        evaluation = evaluation_aggregates(evaluation)  # also for a report from before the split
    dataset = run.dataset
    return json_safe({
        "run": {
            "id": run.pk, "status": run.status, "error": run.error or None, "preset": run.params.get("preset"),
            "baseline": run_baseline(run), "baseline_label": BASELINE_LABELS.get(run_baseline(run), run_baseline(run)),
            "owner": run.owner.get_username(), "created": _iso(run.created_at), "finished": _iso(run.finished_at),
            "seconds": _seconds(run.created_at, run.finished_at),
        },
        "dataset": None if dataset is None else {
            "id": dataset.pk, "name": dataset.name, "sha256": dataset.sha256, "records": dataset.record_count,
            "train_records": dataset.train_count, "heldout_records": dataset.heldout_count,
            "canaries": dataset.canary_count,
        },
        "privacy": _privacy(run, children),
        "parameters": run.params.get("stages", {}),
        "stages": _stages(run, children, latest),
        "series": _series(latest),
        "synthesis": _synthesis(latest, limit=example_pairs),
        "evaluation_job": evaluation_job and {"id": evaluation_job.pk, "status": evaluation_job.status},
        "headline": _headline(evaluation),
        # an evaluation from before the verdict gets one from its figures (its missing parts said so)
        "verdict": None if evaluation is None else (evaluation.get("verdict") or verdict(evaluation)),
        "evaluation": evaluation,
        "records_redacted": not records_readable,
    })


def report_comparison(run: Job, *, viewer=None) -> list[dict[str, Any]]:
    """Headline figures side by side, one row per run on the same dataset: this run first (even
    when it is not evaluated yet: its figures are then None), then, for each other baseline in
    BASELINE_LABELS order, the NEWEST run of it with a succeeded evaluation. The run's own
    baseline is represented by the run itself. With `viewer`, only runs that user may see."""
    rows = [report_comparison_row(run)]
    if run.dataset_id is None:
        return rows
    others = (Job.objects.filter(kind=RUN, dataset_id=run.dataset_id, children__kind="evaluate",
                                 children__status=Job.Status.SUCCEEDED)
              .exclude(pk=run.pk).distinct().order_by("-created_at", "-pk"))
    if viewer is not None:
        others = others.filter(pk__in=jobs_visible_to(viewer).values("pk"))
    newest: dict[str, dict] = {}
    for other in others:
        baseline = run_baseline(other)
        if baseline == run_baseline(run) or baseline in newest:
            continue
        row = _comparison_row(other, this_run=False)
        if row["evaluated"]:
            newest[baseline] = row
    return rows + [newest[baseline] for baseline in BASELINE_LABELS if baseline in newest]


def report_comparison_row(run: Job) -> dict[str, Any]:
    """The run's own row of the comparison (its figures None until it is evaluated)."""
    return _comparison_row(run, this_run=True)


def report_charts(report: dict[str, Any]) -> dict[str, Any]:
    """The part of a run_report the page's charts draw (for json_script): the curves, and the
    membership histograms and ROC points of each attack."""
    membership = ((report.get("evaluation") or {}).get("privacy") or {}).get("membership") or {}
    return {
        "epsilon": report["series"]["epsilon"],
        "loss": report["series"]["loss"],
        "stage_labels": {row["kind"]: row["label"] for row in report["stages"]},
        "membership": {attack: {key: summary.get(key) for key in ("auc", "histogram", "roc")}
                       for attack, summary in membership.items() if isinstance(summary, dict)},
    }


# --- pieces of the report ------------------------------------------------------------------

def _privacy(run: Job, children: list[Job]) -> dict[str, Any]:
    """The privacy of the model the run released, from the ledger rows of its stages."""
    jobs = [run.pk, *(child.pk for child in children)]
    entries = list(LedgerEntry.objects.filter(job_id__in=jobs).order_by("created_at", "id"))
    commits = [e for e in entries if e.kind == LedgerEntry.Kind.COMMIT]
    nonprivate = [e for e in entries if e.kind == LedgerEntry.Kind.NONPRIVATE]
    target = (run.params.get("stages", {}).get("dp_finetune") or {}).get("target_epsilon")
    result = {"dp": True, "unbounded": False, "epsilon": None, "epsilon_display": MISSING, "delta": None,
              "target_epsilon": target, "accountant": None, "mechanism": {}, "commits": len(commits),
              "ledger_jobs": sorted({e.job_id for e in commits + nonprivate}),
              "epsilon_unit": run.dataset.epsilon_unit if run.dataset else "per record"}
    if nonprivate or run_baseline(run) == "nonprivate":
        # no finite epsilon describes training on the raw records: unbounded, never "0"
        return result | {"dp": False, "unbounded": True, "epsilon_display": INFINITY, "target_epsilon": None,
                         "label": "non-private release: no differential-privacy guarantee (ε = ∞)"}
    if commits:
        epsilon = sum(float(e.epsilon) for e in commits)  # sequential composition, if ever more than one
        mechanism = commits[-1].mechanism or {}
        return result | {"epsilon": epsilon, "epsilon_display": f"{epsilon:.4g}", "delta": sum(e.delta for e in commits),
                         "accountant": mechanism.get("accountant"), "mechanism": mechanism,
                         "label": f"differentially private (DP-SGD), epsilon {result['epsilon_unit']} committed "
                                  "in the ledger"}
    if run_baseline(run) == "self_instruct":  # stages 2-5 from the base model alone
        return result | {"epsilon": 0.0, "epsilon_display": "0",
                         "label": "no private record was used for training (ε = 0)"}
    return result | {"label": "no epsilon committed yet"}


def _stages(run: Job, children: list[Job], latest: dict[str, Job]) -> list[dict[str, Any]]:
    """The run's stages in pipeline order (and any other child kind after them), with status
    and wall time in seconds; a stage not submitted yet has status "not started"."""
    labels = {kind: job_kind_label(kind) for kind in job_kinds()}
    kinds = [*_pipeline(run), *(child.kind for child in children)]
    rows = []
    for kind in dict.fromkeys(kinds):
        child = latest.get(kind)
        rows.append({
            "kind": kind, "label": labels.get(kind, kind), "job": child.pk if child else None,
            "status": child.status if child else "not started", "error": (child.error or None) if child else None,
            "started": child and _iso(child.started_at), "finished": child and _iso(child.finished_at),
            "seconds": child and _seconds(child.started_at, child.finished_at),
        })
    return rows


def _series(latest: dict[str, Job]) -> dict[str, Any]:
    """Epsilon vs step (stage 1's `epsilon` events) and loss vs step per training stage
    (`metric` events with a loss), as columns for the charts."""
    epsilon = {"step": [], "epsilon": [], "target_epsilon": None}
    if "dp_finetune" in latest:
        for payload in _payloads(latest["dp_finetune"], JobEvent.Kind.EPSILON):
            if _is_number(payload.get("step")) and _is_number(payload.get("epsilon")):
                epsilon["step"].append(payload["step"])
                epsilon["epsilon"].append(payload["epsilon"])
                epsilon["target_epsilon"] = payload.get("target_epsilon", epsilon["target_epsilon"])
    loss = {}
    for kind in LOSS_STAGES:
        points = [(p["step"], p["loss"]) for p in _payloads(latest[kind], JobEvent.Kind.METRIC)
                  if _is_number(p.get("step")) and _is_number(p.get("loss"))] if kind in latest else []
        if points:
            loss[kind] = {"step": [step for step, _ in points], "loss": [value for _, value in points]}
    return {"epsilon": epsilon, "loss": loss}


def _synthesis(latest: dict[str, Job], *, limit: int) -> dict[str, Any]:
    """What the filter kept and dropped (rows of reason, label, count; from its metric event,
    else its verdicts file), what distillation dropped, and the first `limit` synthetic
    (instruction, response) pairs of the pairs file (`pairs`: how many it holds)."""
    counts, pii_detector = {}, None
    if "filter" in latest:
        payloads = _payloads(latest["filter"], JobEvent.Kind.METRIC)
        if payloads:
            counts = {k: v for k, v in payloads[-1].items() if k != "step" and _is_number(v)}
            pii_detector = payloads[-1].get("pii_detector")
        else:
            rows = _jsonl(_artifact_file(latest["filter"], kind="report", name=VERDICTS_FILE))
            counts = Counter("kept" if row.get("kept") else str(row.get("reason")) for row in rows)
    distill, pairs_file = None, None
    if "distill" in latest:
        payloads = _payloads(latest["distill"], JobEvent.Kind.METRIC)
        distill = {k: v for k, v in payloads[-1].items() if k != "step"} if payloads else None
        pairs_file = _artifact_file(latest["distill"], kind="synthetic_data", name=PAIRS_FILE)
    pairs = _jsonl(pairs_file)
    return {
        "filter_counts": [{"reason": reason, "label": FILTER_LABELS.get(reason, reason), "count": count}
                          for reason, count in counts.items()] or None,
        "filter_total": sum(counts.values()) if counts else None,
        "pii_detector": pii_detector,
        "distill": distill,
        "pairs": len(pairs) if pairs_file else None,
        "examples": [{"instruction": p.get("instruction"), "response": p.get("response")} for p in pairs[:limit]],
    }


def _evaluation(children: list[Job], *, records_readable: bool = False) -> tuple[Job | None, dict | None]:
    """(the newest evaluate child, the report of the newest SUCCEEDED one that has it). The
    report is its aggregates (evaluation.json, server-readable), or with records_readable the
    whole report (evaluation_records.json, client-only) where this process can read it (web and
    worker-client mount the private volume). The first is None for a run never evaluated."""
    evaluations = [child for child in children if child.kind == "evaluate"]
    for child in reversed(evaluations):
        if child.status != Job.Status.SUCCEEDED:
            continue
        path = records_readable and _artifact_file(child, kind="report", name=EVALUATION_RECORDS_FILE)
        path = path or _artifact_file(child, kind="report", name=EVALUATION_FILE)
        try:
            report = json.loads(path.read_text(encoding="utf-8")) if path else None
        except (OSError, ValueError):
            report = None
        if isinstance(report, dict):
            return child, report
    return (evaluations[-1] if evaluations else None), None


def _headline(evaluation: dict | None) -> dict[str, Any]:
    """The HEADLINE_PATHS figures of an evaluation.json (None where absent) with their intervals
    (report_figures.headline_intervals), the sample each sequentially sampled figure used and why it
    stopped (headline_samples), why a declined figure is not given (headline_problems;
    the figure and its bounds are then None), the random-guess top-1 rate of the reconstruction
    attack (uniform ranking of the candidates it used), and why fidelity has no figure, if so."""
    figures = {name: _dig(evaluation, path) for name, path in HEADLINE_PATHS.items()}
    figures |= headline_intervals(evaluation) | headline_problems(evaluation) | headline_samples(evaluation)
    for name in PROBLEM_PATHS:  # a declined figure is never printed, whatever an older file holds
        if figures[f"{name}_problem"]:
            figures |= {name: None, f"{name}_low": None, f"{name}_high": None}
    expected = _dig(evaluation, ("privacy", "reconstruction", "expected_random_top1_rate"))
    figures["reconstruction_random_guess_rate"] = (
        expected if expected is not None else _dig(evaluation, ("privacy", "reconstruction", "random_guess_rate")))
    # why fidelity has no figure, in words ("not applicable: no synthetic data", too few texts)
    utility = evaluation.get("utility") if isinstance(evaluation, dict) else None
    fidelity = utility.get("fidelity") if isinstance(utility, dict) else None
    problem = fidelity.get("problem") if isinstance(fidelity, dict) else None
    figures["fidelity_problem"] = problem if isinstance(problem, str) else None
    return figures


def _comparison_row(run: Job, *, this_run: bool) -> dict[str, Any]:
    children = list(run.children.order_by("pk"))
    evaluation_job, evaluation = _evaluation(children)
    privacy = _privacy(run, children)
    baseline = run_baseline(run)
    return json_safe({
        "run": run.pk, "this_run": this_run, "baseline": baseline,
        "baseline_label": BASELINE_LABELS.get(baseline, baseline),
        "preset": run.params.get("preset"), "status": run.status, "created": _iso(run.created_at),
        "evaluated": evaluation is not None, "evaluation_job": evaluation_job.pk if evaluation else None,
        "dp": privacy["dp"], "unbounded": privacy["unbounded"], "epsilon": privacy["epsilon"],
        "epsilon_display": privacy["epsilon_display"], "delta": privacy["delta"], **_headline(evaluation),
    })


# --- small readers ---------------------------------------------------------------------------

def _pipeline(run: Job) -> tuple[str, ...]:
    """The stages of the run's baseline; none for a baseline this code does not know."""
    try:
        return run_pipeline(run)
    except KeyError:
        return ()


def _payloads(job: Job, kind: str) -> list[dict]:
    payloads = job.events.filter(kind=kind).order_by("seq").values_list("payload", flat=True)
    return [payload for payload in payloads if isinstance(payload, dict)]


def _artifact_file(job: Job, *, kind: str, name: str) -> Path | None:
    """The newest artifact file of `job` named `name`, if it is still inside its area's root
    (jobs.artifacts) and this process has that area."""
    artifact = job.artifacts.filter(kind=kind, path__endswith=name).order_by("-pk").first()
    path = artifact_existing_file(artifact) if artifact is not None else None
    return path if path is not None and path.is_file() else None


def _jsonl(path: Path | None) -> list[dict]:
    """The objects of a JSONL file; a missing file or a malformed line gives nothing for it."""
    if path is None:
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    rows = []
    for line in lines:
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return [row for row in rows if isinstance(row, dict)]


def _dig(data: Any, path: tuple[str, ...]) -> float | None:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return float(data) if _is_number(data) and math.isfinite(data) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _iso(moment) -> str | None:
    return moment.isoformat() if moment else None


def _seconds(start, end) -> float | None:
    return (end - start).total_seconds() if start and end else None
