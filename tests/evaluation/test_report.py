"""The run report: privacy spent (from the ledger), training curves, synthetic data, the
evaluation, the comparison with the baselines on the same dataset, its CSV and JSON exports and
the page, for runs with and without an evaluation, and who may see them."""
import csv
import io
import json
import math
import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils.html import escape
from django.utils import timezone

from evaluation.canary import EXPOSURE_RANGE
from evaluation.intervals import mean_interval, wilson_interval
from evaluation.membership import attack_summary
from evaluation.utility import pairwise_win_rate
from ksg_web.runs.report import HEADLINE_PATHS, report_comparison, run_report
from ksg_web.runs.management.commands.ksg_evaluate import comparison_table
from ksg_web.runs.report_figures import INTERVAL_PATHS, ONE_ORDER_JUDGE
from ksg_web.runs.report_files import report_csv, report_json
from jobs.models import Job
from jobs.services import artifact_record, job_event_record
from privacy.models import LedgerEntry
from privacy.services import budget_reserve, budget_settle
from tests.privacy.factories import make_dataset

pytestmark = pytest.mark.django_db

MEMBERS = [-0.8, -0.9, -1.0, -1.1, -1.2, -0.7]
NONMEMBERS = [-1.5, -1.3, -1.05, -1.6, -1.4, -0.95]
MECHANISM = {"mechanism": "poisson_subsampled_gaussian", "sample_rate": 0.0125, "noise_multiplier": 1.137,
             "steps": 240, "max_grad_norm": 1.0, "accountant": "prv",
             "library_versions": {"opacus": "1.6.0", "torch": "2.13.0+cpu", "numpy": "2.4.6", "scipy": "1.17.1"}}
STAGES = {
    "dp_finetune": {"target_epsilon": 3.0, "epochs": 1.0, "base_model": "smollm2-135m-instruct"},
    "generate": {"num_instructions": 40, "domain": "medical"},
    "filter": {"dedup_threshold": 0.7, "relevance_threshold": 0.5},
    "distill": {"professional_model": "=HYPERLINK(\"http://evil\")"},
    "finetune_target": {"epochs": 2.0, "learning_rate": 0.0002},
    "finetune_private": {"epochs": 1.0},
    "evaluate": {"max_records": 100},
}
# utility.fidelity as evaluation.fidelity writes it: MAUVE and the k-NN figures of 25 held-out
# private against 40 synthetic instructions, each with its bootstrap interval
FIDELITY_FIGURES = {"mauve": (0.812, 0.61, 0.95), "precision": (0.7, 0.5, 0.85), "recall": (0.64, 0.44, 0.8),
                    "density": (0.9, 0.6, 1.3), "coverage": (0.76, 0.56, 0.92)}
PIPELINES = {"knowledgesg": ("dp_finetune", "generate", "filter", "distill", "finetune_target", "evaluate"),
             "dp_direct": ("dp_finetune", "evaluate"), "nonprivate": ("finetune_private", "evaluate"),
             "self_instruct": ("generate", "filter", "distill", "finetune_target", "evaluate")}


@pytest.fixture(autouse=True)
def artifact_dir(settings, tmp_path):
    settings.KSG_ARTIFACT_DIR = tmp_path / "artifacts"
    settings.KSG_ARTIFACT_DIR.mkdir()
    return settings.KSG_ARTIFACT_DIR


@pytest.fixture()
def ada(make_user):
    return make_user("ada")


@pytest.fixture()
def dataset(ada):
    return make_dataset(ada, name="clinic", epsilon_limit="100")


class _Judge:
    """A stand-in judge model: prefers the answer marked GOOD wherever it is shown, or with
    by_position answers "A" whatever it reads (evaluation.utility.pairwise_win_rate's view)."""

    def __init__(self, *, by_position: bool):
        self.by_position = by_position

    def next_token_probs(self, prompts, candidates):
        first = [p[-1]["content"].split("Answer A:\n")[1].split("\n\nAnswer B:")[0] for p in prompts]
        return [{"A": 0.9, "B": 0.05} if self.by_position or "GOOD" in answer else {"A": 0.05, "B": 0.9}
                for answer in first]


def judged(*, by_position: bool = False) -> dict:
    """The win-rate part of an evaluation.json, from the real pairwise_win_rate on 3 questions: the
    target's answer better on 2 (win-rate 2/3, consistency 1), or a judge that picks by position
    (consistency 0: no win-rate, a problem sentence)."""
    return pairwise_win_rate(_Judge(by_position=by_position), ["q1", "q2", "q3"], ["GOOD t1", "GOOD t2", "t3"],
                             ["b1", "b2", "GOOD b3"])


def evaluation_json(*, shift: float = 0.0, canaries: bool = True, heldout_loss: float = 1.8,
                    intervals: bool = True, judge_by_position: bool = False) -> dict:
    """An evaluation.json as evaluation.stage writes it; membership from the real attack_summary,
    the win-rate from the real pairwise_win_rate (judged), intervals from evaluation.intervals.
    intervals=False: as written before the intervals existed (and before the judge saw both answer
    orders: one order, no consistency)."""
    members = [score + shift for score in MEMBERS]
    fidelity = {"encoder": "smollm2-135m-instruct: mean-pooled last hidden state (fp32)", "n_private": 25,
                "n_synthetic": 40, "problem": None, "mauve_buckets": 5, "nearest_k": 3,
                **{name: value for name, (value, _, _) in FIDELITY_FIGURES.items()}}
    report = {
        "dataset": {"name": "clinic", "sha256": "a" * 64, "canaries": 2 if canaries else 0},
        "records": {"train": len(members), "heldout": len(NONMEMBERS)},
        "privacy": {
            "membership": {"loss": attack_summary(members, NONMEMBERS),
                           "min_k": attack_summary([s - 0.5 for s in members], [s - 0.5 for s in NONMEMBERS])
                           | {"k": 0.2}},
            "reconstruction": {
                "n_targets": 10, "candidate_set_size": 50, "likelihood_top1_rate": 0.3, "likelihood_top5_rate": 0.6,
                "generation_exact_rate": 0.1, "random_guess_rate": 0.02, "expected_random_top1_rate": 0.02,
                "expected_random_top5_rate": 0.1,
                "examples": [{"masked_text": "Dr. [NAME] saw the patient about chest pain.", "field": "response",
                              "truth": "Maria Lopez", "top_guess": "Maria Lopez", "generated": "John Hale"}],
            },
        },
        "utility": {
            "heldout_loss": {"target": {"loss": heldout_loss, "perplexity": math.exp(heldout_loss), "n": 6},
                             "base": {"loss": 2.4, "perplexity": math.exp(2.4), "n": 6}},
            "rouge_l": {"target": {"mean": 0.31, "n": 3, "scores": [0.3, 0.31, 0.32], "examples": []},
                        "base": {"mean": 0.22, "n": 3, "scores": [0.2, 0.22, 0.24], "examples": []}},
            "win_rate": judged(by_position=judge_by_position),
            "ifd": {"private": {"mean": 0.93, "median": 0.9, "n": 6, "share_at_least_1": 0.2},
                    "synthetic": {"mean": 0.71, "median": 0.7, "n": 12, "share_at_least_1": 0.1}},
            "fidelity": fidelity,
        },
    }
    if canaries:
        rows = [{"secret": "483920", "log_prob": -9.1, "rank_in_sample": 1, "reference_sample": 1000,
                 "estimated_rank": 1.0, "exposure": math.log2(10**6)},
                {"secret": "120577", "log_prob": -14.2, "rank_in_sample": 401, "reference_sample": 1000,
                 "estimated_rank": 400001.0, "exposure": math.log2(10**6) - math.log2(400001.0)}]
        report["privacy"]["canaries"] = {"canaries": rows, "mean_exposure": sum(r["exposure"] for r in rows) / 2,
                                         "max_exposure": rows[0]["exposure"], "max_possible_exposure": math.log2(10**6),
                                         "space_size": 10**6}
    return _with_intervals(report, heldout_loss) if intervals else _without_intervals(report)


def _with_intervals(report: dict, heldout_loss: float) -> dict:
    """The intervals evaluation.stage writes beside the figures (membership's come with it)."""
    reconstruction, utility = report["privacy"]["reconstruction"], report["utility"]
    reconstruction |= {"likelihood_top1_interval": wilson_interval(3, 10),
                       "likelihood_top5_interval": wilson_interval(6, 10),
                       "generation_exact_interval": wilson_interval(1, 10)}
    for side, loss in (("target", heldout_loss), ("base", 2.4)):
        losses = [loss + step for step in (-0.3, -0.2, -0.1, 0.1, 0.2, 0.3)]  # 6 records around the mean
        utility["heldout_loss"][side]["loss_interval"] = mean_interval(losses, bounds=(0.0, None))
        rouge_l = utility["rouge_l"][side]
        rouge_l["mean_interval"] = mean_interval(rouge_l["scores"], bounds=(0.0, 1.0))
    for side in ("private", "synthetic"):
        ifd = utility["ifd"][side]
        ifd["mean_interval"] = mean_interval([ifd["mean"] + step for step in (-0.1, 0.0, 0.1)])
    for name, (_, low, high) in FIDELITY_FIGURES.items():
        utility["fidelity"][f"{name}_interval"] = {"low": low, "high": high, "n": 65, "n_private": 25,
                                                   "n_synthetic": 40, "method": "percentile bootstrap",
                                                   "resamples": 200, "confidence": 0.95}
    canaries = report["privacy"].get("canaries")
    if canaries:
        exposures = [row["exposure"] for row in canaries["canaries"]]
        canaries |= {"n_canaries": 2, "mean_exposure_interval": mean_interval(exposures, bounds=EXPOSURE_RANGE)}
    return report


def _without_intervals(report: dict) -> dict:
    report["utility"].pop("fidelity")  # an evaluation from before the intervals predates fidelity too
    for summary in report["privacy"]["membership"].values():
        for key in ("auc_interval", "tpr_at_1pct_fpr_interval", "fpr_resolution", "note"):
            summary.pop(key)
    # the judge then saw each pair once, in a seeded order: counts and a rate, no consistency
    report["utility"]["win_rate"] = {"wins": 2, "losses": 1, "ties": 0, "n": 3, "win_rate": 2 / 3, "verdicts": []}
    return report


def write_artifact(job: Job, kind: str, name: str, text: str):
    from django.conf import settings

    folder = Path(settings.KSG_ARTIFACT_DIR) / f"job-{job.pk}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return artifact_record(job_id=job.pk, kind=kind, path=folder / name)


def make_run(owner, dataset, *, baseline: str | None = "knowledgesg", evaluation: dict | None = None,
             evaluation_status: str = "succeeded", age_minutes: int = 0) -> Job:
    """A finished run with the children of its baseline; a DP commit (or a non-private release)
    in the ledger through the real services; an evaluation.json if given."""
    params = {"preset": "demo", "stages": {kind: STAGES[kind] for kind in PIPELINES[baseline or "knowledgesg"]}}
    if baseline:
        params["baseline"] = baseline
    else:  # a run from before evaluation existed, as migration runs.0001 recorded it
        params["stages"].pop("evaluate")
        params.update(baseline="knowledgesg", pipeline=[kind for kind in PIPELINES["knowledgesg"] if kind != "evaluate"])
    run = Job.objects.create(kind="run", owner=owner, dataset=dataset, params=params, status="succeeded",
                             finished_at=timezone.now())
    Job.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=age_minutes))
    run.refresh_from_db()
    for position, kind in enumerate(PIPELINES[baseline or "knowledgesg"]):
        if kind == "evaluate" and (evaluation is None or baseline is None):
            continue
        started = timezone.now() - timedelta(seconds=100 - position)
        child = Job.objects.create(kind=kind, owner=owner, dataset=dataset, parent=run, params=STAGES[kind],
                                   status=evaluation_status if kind == "evaluate" else "succeeded",
                                   started_at=started, finished_at=started + timedelta(seconds=12.5))
        CHILD_BUILDERS.get(kind, lambda job: None)(child)
        if kind == "evaluate":
            write_artifact(child, "report", "evaluation.json", json.dumps(evaluation))
    return run


def _dp_finetune(job: Job) -> None:
    budget_reserve(job=job, epsilon=3.0, actor=job.owner)
    for step, epsilon in ((1, 0.9), (2, 1.7), (3, 2.41)):
        job_event_record(job_id=job.pk, kind="epsilon", payload={"step": step, "epsilon": epsilon, "target_epsilon": 3.0})
        job_event_record(job_id=job.pk, kind="metric", payload={"step": step, "loss": 3.0 - step / 2, "batch_size": 8})
    budget_settle(job=job, epsilon=2.41, delta=1e-4, mechanism=MECHANISM, actor=job.owner)


def _finetune_private(job: Job) -> None:
    LedgerEntry.objects.create(budget=job.dataset.budget, job=job, kind="nonprivate", actor=job.owner,
                               epsilon=Decimal(0), delta=1.0, mechanism={"dp": False}, reason="non-private baseline")
    for step in (1, 2):
        job_event_record(job_id=job.pk, kind="metric", payload={"step": step, "loss": 1.0 / step})


def _filter(job: Job) -> None:
    job_event_record(job_id=job.pk, kind="metric", payload={"step": 1, "kept": 25, "empty_or_malformed": 3, "pii": 4,
                                                            "duplicate": 6, "not_relevant": 2})


def _distill(job: Job) -> None:
    pairs = [{"instruction": f"How is condition {i} treated?", "response": f"Treatment plan {i}."} for i in range(8)]
    write_artifact(job, "synthetic_data", "synthetic_pairs.jsonl", "".join(json.dumps(p) + "\n" for p in pairs))
    job_event_record(job_id=job.pk, kind="metric", payload={"step": 1, "pairs": 8, "dropped_empty": 1, "dropped_pii": 2})


def _finetune_target(job: Job) -> None:
    for step in (1, 2, 3, 4):
        job_event_record(job_id=job.pk, kind="metric", payload={"step": step, "loss": 2.0 / step, "seconds": 0.1})


CHILD_BUILDERS = {"dp_finetune": _dp_finetune, "finetune_private": _finetune_private, "filter": _filter,
                  "distill": _distill, "finetune_target": _finetune_target}


def test_run_report_gathers_privacy_stages_curves_synthetic_data_and_evaluation(ada, dataset):
    run = make_run(ada, dataset, evaluation=evaluation_json())

    report = run_report(run, example_pairs=3)

    assert report["run"] | {"created": None, "finished": None, "seconds": None} == {
        "id": run.pk, "status": "succeeded", "error": None, "preset": "demo", "baseline": "knowledgesg",
        "baseline_label": "KnowledgeSG", "owner": "ada", "created": None, "finished": None, "seconds": None}
    assert report["dataset"] == {"id": dataset.pk, "name": "clinic", "sha256": "a" * 64, "records": 1000,
                                 "train_records": 900, "heldout_records": 100, "canaries": 0}
    privacy = report["privacy"]
    assert privacy["dp"] and not privacy["unbounded"]
    assert privacy["epsilon"] == pytest.approx(2.41) and privacy["epsilon_display"] == "2.41"
    assert privacy["delta"] == 1e-4 and privacy["accountant"] == "prv" and privacy["target_epsilon"] == 3.0
    assert privacy["mechanism"]["noise_multiplier"] == 1.137 and privacy["mechanism"]["steps"] == 240
    assert report["parameters"] == run.params["stages"]
    assert [(s["kind"], s["status"], s["seconds"]) for s in report["stages"]] == [
        (kind, "succeeded", 12.5) for kind in PIPELINES["knowledgesg"]]
    assert report["series"]["epsilon"] == {"step": [1, 2, 3], "epsilon": [0.9, 1.7, 2.41], "target_epsilon": 3.0}
    assert report["series"]["loss"] == {"dp_finetune": {"step": [1, 2, 3], "loss": [2.5, 2.0, 1.5]},
                                        "finetune_target": {"step": [1, 2, 3, 4], "loss": [2.0, 1.0, 2 / 3, 0.5]}}
    synthesis = report["synthesis"]
    assert {row["reason"]: row["count"] for row in synthesis["filter_counts"]} == {
        "kept": 25, "empty_or_malformed": 3, "pii": 4, "duplicate": 6, "not_relevant": 2}
    assert synthesis["filter_total"] == 40 and synthesis["pairs"] == 8 and synthesis["distill"]["dropped_pii"] == 2
    assert [p["instruction"] for p in synthesis["examples"]] == [f"How is condition {i} treated?" for i in range(3)]
    assert report["evaluation"]["privacy"]["reconstruction"]["n_targets"] == 10
    headline = report["headline"]
    assert headline["membership_auc_loss"] == pytest.approx(attack_summary(MEMBERS, NONMEMBERS)["auc"])
    assert headline["membership_auc_loss"] > 0.5
    assert headline["reconstruction_top1_rate"] == 0.3 and headline["reconstruction_random_guess_rate"] == 0.02
    assert headline["canary_max_exposure"] == pytest.approx(math.log2(10**6))
    assert headline["heldout_loss_target"] == 1.8 and headline["ifd_synthetic"] == 0.71
    json.dumps(report, allow_nan=False)  # JSON-ready as it is


def test_nonprivate_baseline_is_an_unbounded_release_never_epsilon_zero(ada, dataset):
    run = make_run(ada, dataset, baseline="nonprivate", evaluation=evaluation_json(shift=0.6))

    privacy = run_report(run)["privacy"]
    assert privacy["dp"] is False and privacy["unbounded"] is True
    assert privacy["epsilon"] is None and privacy["epsilon_display"] == "∞" and privacy["delta"] is None
    assert "non-private" in privacy["label"]
    row = report_comparison(run)[0]
    assert row["epsilon_display"] == "∞" and row["epsilon"] is None and row["dp"] is False
    assert run_report(run)["series"]["loss"] == {"finetune_private": {"step": [1, 2], "loss": [1.0, 0.5]}}


def test_self_instruct_never_trains_on_private_data_so_its_epsilon_is_zero(ada, dataset):
    run = make_run(ada, dataset, baseline="self_instruct", evaluation=evaluation_json())
    privacy = run_report(run)["privacy"]
    assert privacy["epsilon"] == 0.0 and privacy["dp"] and not privacy["unbounded"]
    assert run_report(run)["series"]["epsilon"]["step"] == []


def test_comparison_puts_this_run_first_then_the_newest_evaluated_run_of_each_other_baseline(ada, dataset, make_user):
    run = make_run(ada, dataset, evaluation=evaluation_json())
    make_run(ada, dataset, baseline="dp_direct", evaluation=evaluation_json(shift=0.1), age_minutes=30)
    newer_dp_direct = make_run(ada, dataset, baseline="dp_direct", evaluation=evaluation_json(shift=0.2), age_minutes=10)
    nonprivate = make_run(ada, dataset, baseline="nonprivate", evaluation=evaluation_json(shift=0.6), age_minutes=5)
    make_run(ada, dataset, baseline="self_instruct", evaluation=evaluation_json(), evaluation_status="failed")
    make_run(ada, dataset, evaluation=evaluation_json(), age_minutes=1)  # another KnowledgeSG: this run stands for it
    make_run(ada, make_dataset(ada, name="bank", epsilon_limit="100"), baseline="dp_direct", evaluation=evaluation_json())

    rows = report_comparison(run, viewer=ada)

    assert [(row["run"], row["baseline"]) for row in rows] == [
        (run.pk, "knowledgesg"), (newer_dp_direct.pk, "dp_direct"), (nonprivate.pk, "nonprivate")]
    assert rows[0]["this_run"] and not rows[1]["this_run"]
    assert rows[2]["membership_auc_loss"] > rows[0]["membership_auc_loss"]
    assert rows[2]["epsilon_display"] == "∞" and rows[1]["epsilon_display"] == "2.41"


def test_comparison_shows_only_runs_the_viewer_may_see(ada, dataset, make_user):
    """mallory's run on ada's dataset (rows made directly: no grant): she may not see ada's runs."""
    ada_run = make_run(ada, dataset, baseline="dp_direct", evaluation=evaluation_json())
    mallory = make_user("mallory")
    mallory_run = make_run(mallory, dataset, evaluation=evaluation_json(), age_minutes=1)

    assert [row["run"] for row in report_comparison(mallory_run, viewer=mallory)] == [mallory_run.pk]
    assert [row["run"] for row in report_comparison(mallory_run)] == [mallory_run.pk, ada_run.pk]


def test_csv_holds_the_comparison_the_parameters_and_the_versions(ada, dataset):
    run = make_run(ada, dataset, evaluation=evaluation_json())
    nonprivate = make_run(ada, dataset, baseline="nonprivate", evaluation=evaluation_json(shift=0.6), age_minutes=5)

    table = csv_section(report_csv(run), "comparison")
    assert [line["run"] for line in table] == [str(run.pk), str(nonprivate.pk)]
    assert table[0]["epsilon"] == "2.41" and table[0]["DP guarantee"] == "yes"
    assert table[1]["epsilon"] == "∞" and table[1]["DP guarantee"] == "no"
    assert float(table[0]["membership AUC (loss)"]) == pytest.approx(attack_summary(MEMBERS, NONMEMBERS)["auc"])
    assert table[0]["reconstruction random-guess top-1"] == "0.02" and table[0]["held-out loss (base)"] == "2.4"
    auc_interval = attack_summary(MEMBERS, NONMEMBERS)["auc_interval"]
    assert float(table[0]["membership AUC (loss) 95% low"]) == pytest.approx(auc_interval["low"])
    assert float(table[0]["membership AUC (loss) 95% high"]) == pytest.approx(auc_interval["high"])
    assert table[0]["membership AUC (loss) n"] == "6+6" and table[0]["win-rate vs base n"] == "3"
    assert float(table[0]["win-rate vs base 95% low"]) == pytest.approx(wilson_interval(2, 3)["low"])
    assert table[0]["win-rate vs base: why not given"] == "" and float(table[0]["win-rate vs base"]) == pytest.approx(2 / 3)
    assert table[0]["judge consistency (answer order swapped)"] == "1.0"
    assert float(table[0]["judge consistency (answer order swapped) 95% low"]) == pytest.approx(wilson_interval(3, 3)["low"])
    header = list(table[0])
    assert header.index("held-out loss (target)") + 1 == header.index("held-out loss (target) 95% low")
    assert "DP guarantee 95% low" not in header  # only figures with an interval get the columns
    parameters = {(row["stage"], row["parameter"]): row["value"] for row in csv_section(report_csv(run), "parameters")}
    assert parameters[("dp_finetune", "target_epsilon")] == "3.0" and parameters[("generate", "domain")] == "medical"
    assert parameters[("distill", "professional_model")].startswith("'=")  # no formula runs in a spreadsheet
    privacy = {row["quantity"]: row["value"] for row in csv_section(report_csv(run), "privacy")}
    assert privacy["noise multiplier"] == "1.137" and privacy["accountant"] == "prv" and privacy["epsilon"] == "2.41"
    versions = {row["library"]: row for row in csv_section(report_csv(run), "library versions")}
    assert {"transformers", "peft", "torch", "opacus"} <= set(versions)
    assert versions["opacus"]["at the epsilon commit"] == "1.6.0"


def csv_section(text: str, title: str) -> list[dict]:
    """The rows of one section of the report CSV (title row, header row, rows, blank row) as dicts."""
    rows = list(csv.reader(io.StringIO(text)))
    start = rows.index([title])
    header, body = rows[start + 1], []
    for row in rows[start + 2:]:
        if not row:
            break
        body.append(dict(zip(header, row, strict=True)))
    return body


def test_json_has_the_report_the_comparison_and_library_versions(ada, dataset):
    run = make_run(ada, dataset, evaluation=evaluation_json())
    data = report_json(run)
    assert data["run"]["id"] == run.pk and data["comparison"][0]["run"] == run.pk
    assert {"transformers", "peft", "torch", "opacus", "numpy", "scipy"} <= set(data["library_versions"])
    assert data["evaluation"]["privacy"]["membership"]["loss"]["roc"][0] == [0.0, 0.0]


def test_non_finite_figures_become_null_and_the_json_stays_valid(ada, dataset, client):
    evaluation = evaluation_json()
    evaluation["utility"]["win_rate"]["win_rate"] = float("nan")
    evaluation["utility"]["heldout_loss"]["base"]["perplexity"] = float("inf")
    run = make_run(ada, dataset, evaluation=evaluation)
    client.force_login(ada)

    response = client.get(reverse("jobs:report-json", args=[run.pk]))

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    data = json.loads(response.content, parse_constant=refuse)
    assert data["headline"]["win_rate"] is None and data["comparison"][0]["win_rate"] is None
    assert data["evaluation"]["utility"]["heldout_loss"]["base"]["perplexity"] is None


def test_report_page_shows_the_figures_charts_data_and_exports_without_inline_code(ada, dataset, client):
    run = make_run(ada, dataset, evaluation=evaluation_json())
    nonprivate = make_run(ada, dataset, baseline="nonprivate", evaluation=evaluation_json(shift=0.6), age_minutes=5)
    client.force_login(ada)

    response = client.get(reverse("jobs:report", args=[run.pk]))

    assert response.status_code == 200
    html = response.content.decode()
    auc = attack_summary(MEMBERS, NONMEMBERS)["auc"]
    assert f"{auc:.3f}" in html and "ε = 2.41" in html and "noise multiplier" in html.lower()
    assert re.search(r"0\.300 <small class=\"interval\">\[0\.11, 0\.60\], n 10</small> <small>\(random 0\.020\)</small>",
                     html)  # reconstruction rate, its Wilson interval (3 of 10), its random-guess rate
    assert "Maria Lopez" in html and "Dr. [NAME] saw the patient" in html  # reconstruction example
    assert "19.93" in html  # canary exposure
    assert "How is condition 0 treated?" in html and "near-duplicate" in html
    assert f'href="/jobs/{nonprivate.pk}/report/"' in html and "∞ non-private" in html
    assert reverse("jobs:report-json", args=[run.pk]) in html and reverse("jobs:report-csv", args=[run.pk]) in html
    assert re.search(r'<link rel="stylesheet" href="/static/css/print.css" media="print">', html)
    # a strict CSP (no 'unsafe-inline'): every script is a file or a JSON data block, no handlers
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, flags=re.S)
    assert all("src=" in attrs or 'type="application/json"' in attrs for attrs, _ in scripts)
    assert all(not body.strip() for attrs, body in scripts if "src=" in attrs)
    assert not re.search(r"\son[a-z]+\s*=", html)
    data = json.loads(re.search(r'<script id="report-data" type="application/json">(.*?)</script>', html, re.S).group(1))
    assert data["epsilon"]["epsilon"] == [0.9, 1.7, 2.41]
    histogram = attack_summary(MEMBERS, NONMEMBERS)["histogram"]
    assert data["membership"]["loss"]["histogram"]["members"] == histogram["members"]
    assert data["membership"]["min_k"]["roc"][-1] == [1.0, 1.0]


def test_headline_and_comparison_carry_each_figures_interval_and_sample_size(ada, dataset):
    run = make_run(ada, dataset, evaluation=evaluation_json())
    auc = attack_summary(MEMBERS, NONMEMBERS)["auc_interval"]

    headline, row = run_report(run)["headline"], report_comparison(run)[0]

    for figures in (headline, row):
        assert (figures["membership_auc_loss_low"], figures["membership_auc_loss_high"]) == (auc["low"], auc["high"])
        assert figures["membership_auc_loss_n"] == "6+6" and figures["tpr_at_1pct_fpr_loss_n"] == "6"
        assert figures["win_rate_low"] == pytest.approx(wilson_interval(2, 3)["low"])
        assert figures["reconstruction_top1_rate_high"] == pytest.approx(wilson_interval(3, 10)["high"])
        assert figures["heldout_loss_target_low"] < figures["heldout_loss_target"] < figures["heldout_loss_target_high"]
        assert figures["canary_mean_exposure_n"] == "2" and figures["rouge_l_base_n"] == "3"


def test_report_page_shows_each_figure_with_its_interval_and_n(ada, dataset, client):
    run = make_run(ada, dataset, evaluation=evaluation_json())
    client.force_login(ada)

    html = client.get(reverse("jobs:report", args=[run.pk])).content.decode()

    interval = '<small class="interval">{}</small>'.format
    assert "0.861 " + interval("[0.64, 1.00], n 6+6") in html  # membership AUC (loss), Hanley-McNeil
    assert "0.500 " + interval("[0.19, 0.81], n 6") in html  # TPR at 1% FPR (loss), Wilson 3 of 6
    assert "1.800 " + interval("[1.55, 2.05], n 6") in html  # held-out loss, t over 6 records
    assert "0.667 " + interval("[0.21, 0.94], n 3") in html  # win-rate, Wilson 2 of 3
    assert "1.000 " + interval("[0.44, 1.00], n 3") in html  # judge consistency, Wilson 3 of 3
    assert "0.310 " + interval("[0.29, 0.33], n 3") in html  # ROUGE-L (target)
    assert "10.63 " + interval("[0.0, 19.9], n 2") in html  # canary mean exposure, clipped to what it can be
    assert "0.100 " + interval("[0.02, 0.40], n 10") in html  # reconstruction, generation exact
    assert "no interval" not in html
    note = html.split('id="tpr-at-low-fpr"')[1].split("</p>")[0]
    assert "With 6 non-members the smallest non-zero false-positive rate is 0.167" in note
    assert "this is the TPR at zero false positives" in note


def test_an_older_evaluation_without_intervals_shows_its_figures_and_says_so(ada, dataset, client):
    evaluation = evaluation_json(intervals=False)
    assert "auc_interval" not in json.dumps(evaluation) and "loss_interval" not in json.dumps(evaluation)
    run = make_run(ada, dataset, evaluation=evaluation)
    client.force_login(ada)

    response = client.get(reverse("jobs:report", args=[run.pk]))

    assert response.status_code == 200
    html = response.content.decode()
    auc = attack_summary(MEMBERS, NONMEMBERS)["auc"]
    assert f'{auc:.3f} <small class="interval">no interval (older evaluation)</small>' in html
    assert '1.800 <small class="interval">no interval (older evaluation)</small>' in html
    assert 'id="tpr-at-low-fpr"' in html and "zero false positives" not in html
    headline = run_report(run)["headline"]
    assert headline["membership_auc_loss"] == pytest.approx(auc) and headline["membership_auc_loss_low"] is None
    assert headline["win_rate_n"] is None
    table = csv_section(report_csv(run), "comparison")
    assert table[0]["membership AUC (loss) 95% low"] == "" and float(table[0]["membership AUC (loss)"]) == auc
    # its win-rate was judged in one order only: what it measured is unknown, so it is not printed
    assert headline["win_rate"] is None and headline["win_rate_problem"] == ONE_ORDER_JUDGE
    assert table[0]["win-rate vs base"] == "" and table[0]["win-rate vs base: why not given"] == ONE_ORDER_JUDGE
    assert "0.667" not in html and f'<span class="figure-problem">not given: {escape(ONE_ORDER_JUDGE)}</span>' in html


def test_a_sample_too_small_for_an_interval_is_said_so_not_hidden(ada, dataset, client):
    evaluation = evaluation_json()
    canaries = evaluation["privacy"]["canaries"]
    canaries["canaries"] = canaries["canaries"][:1]
    canaries |= {"n_canaries": 1, "mean_exposure": canaries["canaries"][0]["exposure"],
                 "mean_exposure_interval": mean_interval([canaries["canaries"][0]["exposure"]])}
    run = make_run(ada, dataset, evaluation=evaluation)
    client.force_login(ada)
    html = client.get(reverse("jobs:report", args=[run.pk])).content.decode()
    assert '19.93 <small class="interval">n 1: too few for an interval</small>' in html


def test_fidelity_shows_with_its_interval_and_n_and_says_in_words_where_there_is_none(ada, dataset, client):
    """The synthetic instructions against the held-out private ones, with bootstrap intervals and
    n (private+synthetic); a run without synthetic data says why instead of a figure: on the
    page, in the comparison rows and in the CSV."""
    from evaluation.fidelity import fidelity_unmeasured

    run = make_run(ada, dataset, evaluation=evaluation_json())
    evaluation = evaluation_json(shift=0.6)
    evaluation["utility"]["fidelity"] = fidelity_unmeasured("not applicable: no synthetic data", n_private=25)
    nonprivate = make_run(ada, dataset, baseline="nonprivate", evaluation=evaluation, age_minutes=5)
    client.force_login(ada)

    html = client.get(reverse("jobs:report", args=[run.pk])).content.decode()

    table = html.split('id="fidelity-table"')[1].split("</table>")[0]
    interval = '<small class="interval">{}</small>'.format
    assert "0.812 " + interval("[0.61, 0.95], n 25+40") in table  # MAUVE
    assert "0.760 " + interval("[0.56, 0.92], n 25+40") in table  # coverage
    assert table.index(f"#{run.pk} ") < table.index("Not applicable: no synthetic data")
    assert "smollm2-135m-instruct: mean-pooled last hidden state" in html
    rows = report_comparison(run)
    assert rows[0]["fidelity_mauve"] == 0.812 and rows[0]["fidelity_problem"] is None
    assert rows[1]["fidelity_mauve"] is None and rows[1]["fidelity_problem"] == "not applicable: no synthetic data"
    table = csv_section(report_csv(run), "comparison")
    mauve = "fidelity: MAUVE (synthetic vs held-out private instructions)"
    assert [line["run"] for line in table] == [str(run.pk), str(nonprivate.pk)]
    assert (table[0][mauve], table[0][f"{mauve} 95% low"], table[0][f"{mauve} 95% high"]) == ("0.812", "0.61", "0.95")
    assert table[0][f"{mauve} n"] == table[0]["fidelity: coverage n"] == "25+40"
    assert table[1][mauve] == "" and table[1]["fidelity: why no figure"] == "not applicable: no synthetic data"


def test_nonprivate_report_page_says_non_private_not_epsilon_zero(ada, dataset, client):
    run = make_run(ada, dataset, baseline="nonprivate", evaluation=evaluation_json(shift=0.6))
    client.force_login(ada)
    html = client.get(reverse("jobs:report", args=[run.pk])).content.decode()
    assert "Non-private release" in html and "ε = ∞" in html
    assert not re.search(r"ε = 0(?![.\d])", html)


def test_a_run_without_an_evaluation_renders_with_dashes(ada, dataset, client):
    run = make_run(ada, dataset, baseline=None)  # a run from before baselines and evaluation existed
    client.force_login(ada)

    report = run_report(run)
    assert report["evaluation"] is None and report["evaluation_job"] is None
    assert report["run"]["baseline"] == "knowledgesg" and set(report["headline"].values()) == {None}
    response = client.get(reverse("jobs:report", args=[run.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="no-evaluation"' in html and "<td>—</td>" in html and "ε = 2.41" in html
    assert 'id="chart-roc"' not in html
    assert client.get(reverse("jobs:report-csv", args=[run.pk])).status_code == 200
    assert client.get(reverse("jobs:report-json", args=[run.pk])).json()["evaluation"] is None


def test_an_evaluation_whose_file_is_gone_or_broken_is_treated_as_missing(ada, dataset, settings):
    run = make_run(ada, dataset, evaluation=evaluation_json())
    artifact = run.children.get(kind="evaluate").artifacts.get()
    path = Path(settings.KSG_ARTIFACT_DIR) / artifact.path
    path.write_text("{not json")
    assert run_report(run)["evaluation"] is None
    path.unlink()
    report = run_report(run)
    assert report["evaluation"] is None and report["evaluation_job"]["status"] == "succeeded"


def test_csv_download_is_an_attachment(ada, dataset, client):
    run = make_run(ada, dataset, evaluation=evaluation_json())
    client.force_login(ada)
    response = client.get(reverse("jobs:report-csv", args=[run.pk]))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == f'attachment; filename="run-{run.pk}-report.csv"'
    assert response.content.decode().startswith("KnowledgeSG run report")


@pytest.mark.parametrize("name", ["jobs:report", "jobs:report-json", "jobs:report-csv"])
def test_report_is_not_found_for_other_users_and_for_jobs_that_are_not_runs(ada, dataset, client, make_user, name):
    run = make_run(ada, dataset, evaluation=evaluation_json())
    client.force_login(make_user("mallory"))
    assert client.get(reverse(name, args=[run.pk])).status_code == 404
    client.force_login(ada)
    stage = run.children.get(kind="dp_finetune")
    assert client.get(reverse(name, args=[stage.pk])).status_code == 404
    client.force_login(make_user("root", staff=True))
    assert client.get(reverse(name, args=[run.pk])).status_code == 200


def test_a_reader_who_may_not_read_the_records_gets_the_figures_without_excerpts(ada, dataset, client, make_user):
    evaluation = evaluation_json()
    evaluation["utility"]["rouge_l"]["target"]["examples"] = [
        {"instruction": "Held-out question about Mr. Oduya", "reference": "private answer", "generated": "x",
         "score": 0.1}]
    run = make_run(ada, dataset, evaluation=evaluation)
    client.force_login(make_user("carol", role="compliance_officer"))  # sees every run, reads no records

    html = client.get(reverse("jobs:report", args=[run.pk])).content.decode()
    data = client.get(reverse("jobs:report-json", args=[run.pk])).json()

    assert f"{attack_summary(MEMBERS, NONMEMBERS)['auc']:.3f}" in html and 'id="records-redacted"' in html
    assert "Maria Lopez" not in html and "[NAME]" not in html
    assert data["records_redacted"] is True and data["evaluation"]["privacy"]["reconstruction"]["examples"] == []
    assert "Oduya" not in json.dumps(data) and "483920" not in json.dumps(data)
    assert data["evaluation"]["privacy"]["canaries"]["canaries"][0]["exposure"] == pytest.approx(math.log2(10**6))
    client.force_login(ada)  # the dataset's owner reads its records
    owner_data = client.get(reverse("jobs:report-json", args=[run.pk])).json()
    assert owner_data["records_redacted"] is False and "483920" in json.dumps(owner_data)


@pytest.mark.parametrize("name", ["jobs:report", "jobs:report-json", "jobs:report-csv"])
def test_report_requires_login(ada, dataset, client, name):
    run = make_run(ada, dataset)
    response = client.get(reverse(name, args=[run.pk]))
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_run_page_links_its_report_and_a_stage_page_does_not(ada, dataset, client):
    run = make_run(ada, dataset)
    client.force_login(ada)
    assert reverse("jobs:report", args=[run.pk]) in client.get(reverse("jobs:detail", args=[run.pk])).content.decode()
    stage = run.children.get(kind="dp_finetune")
    assert 'id="report-link"' not in client.get(reverse("jobs:detail", args=[stage.pk])).content.decode()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_report_reads_every_headline_figure_of_a_real_evaluation(tmp_path, settings, make_user, client):
    """The contract with evaluation.stage: a real evaluation.json (tiny model) fills every figure
    of the comparison but IFD of synthetic data (this evaluation has none)."""
    from transformers import AutoModelForCausalLM

    from privacy.canary import CANARY_INSTRUCTION, CANARY_TEMPLATE
    from evaluation.stage import evaluate_run
    from jobs.kinds import params_as_dict, params_parse
    from jobs.runner import job_execute
    from privacy.datasets import dataset_write_jsonl
    from privacy.demo_data import demo_records
    from privacy.dp.train import DPTrainConfig, lora_wrap
    from privacy.services import dataset_register
    from tests.support.tiny_model import tiny_model_dir

    settings.KSG_PRIVATE_DIR = tmp_path / "private"
    owner = make_user("ada")
    records = demo_records(domain="medical", n=16, seed=3)
    dataset_write_jsonl(tmp_path / "clinic.jsonl", records)
    dataset = dataset_register(owner=owner, name="clinic", source_path=tmp_path / "clinic.jsonl", epsilon_limit="10",
                               heldout_fraction=0.25, canaries=1)
    texts = [r["instruction"] + " " + r["response"] for r in records]
    digits = CANARY_TEMPLATE.format(secret="0 1 2 3 4 5 6 7 8 9")  # every canary token in the vocabulary
    model_dir = tiny_model_dir(tmp_path / "tiny", texts + [CANARY_INSTRUCTION, digits])
    config = DPTrainConfig(target_epsilon=1.0, delta=0.5, dp=False, steps=1, epochs=None, lora_rank=4)
    run = Job.objects.create(kind="run", owner=owner, dataset=dataset, status="succeeded", finished_at=timezone.now(),
                             params={"preset": "demo", "baseline": "dp_direct", "stages": {}})
    holder = Job.objects.create(kind="dp_finetune", owner=owner, dataset=dataset, parent=run, status="succeeded")
    lora_wrap(AutoModelForCausalLM.from_pretrained(model_dir), config).save_pretrained(tmp_path / "artifacts" / "adapter")
    adapter = artifact_record(job_id=holder.pk, kind="adapter", path=tmp_path / "artifacts" / "adapter")
    params = params_as_dict(params_parse("evaluate", {
        "adapter_artifact": adapter.pk, "base_model": str(model_dir), "professional_model": str(model_dir),
        "max_length": 96, "reconstruction_targets": 3, "candidate_set_size": 10, "generation_records": 2,
        "max_new_tokens": 4, "canary_references": 10}))
    evaluate = Job.objects.create(kind="evaluate", owner=owner, dataset=dataset, parent=run, params=params,
                                  celery_task_id="e")
    assert job_execute(job_id=evaluate.pk, celery_task_id="e", stage=evaluate_run) == "succeeded", \
        Job.objects.get(pk=evaluate.pk).error

    report = run_report(run)
    figures = {name: report["headline"][name] for name in HEADLINE_PATHS}
    # the tiny random judge may pick by position: then its win-rate is declined, with the sentence
    declined = {"win_rate"} if report["headline"]["win_rate_problem"] else set()
    assert (report["headline"]["win_rate_problem"] is None) == report["evaluation"]["utility"]["win_rate"]["informative"]
    # no synthetic data (so no fidelity either); no audit canaries in this dataset, and no stage-1
    # adapter apart from the model
    fidelity = {name for name in HEADLINE_PATHS if name.startswith("fidelity_")}
    assert {name for name, value in figures.items() if value is None} == {
        "ifd_synthetic", "audit_epsilon_lower_bound", "audit_dp_adapter_epsilon_lower_bound"} | fidelity | declined, figures
    assert report["headline"]["fidelity_problem"].startswith("not applicable: no synthetic data")
    assert any(f["subject"] == "audit" and f["status"] == "not_run" for f in report["verdict"])
    # every figure has its interval and n, but IFD and fidelity of synthetic data (none here) and, until
    # evaluation.reconstruction writes them, the reconstruction rates
    written = report["evaluation"]["privacy"]["reconstruction"]
    expected = {"ifd_synthetic"} | fidelity | {name for name, path in INTERVAL_PATHS.items()
                                               if name.startswith("reconstruction_") and path[-1] not in written}
    assert {name for name in INTERVAL_PATHS if report["headline"][f"{name}_n"] is None} == expected | declined
    one_canary = {"canary_mean_exposure"}  # n 1: too few for an interval
    assert {name for name in INTERVAL_PATHS if report["headline"][f"{name}_low"] is None} == expected | one_canary | declined
    assert report["dataset"]["canaries"] == 1 and report["evaluation_job"]["id"] == evaluate.pk
    client.force_login(owner)
    response = client.get(reverse("jobs:report", args=[run.pk]))
    assert response.status_code == 200 and 'id="canaries"' in response.content.decode()
    # each canary's row shows its exposure interval and why its references stopped
    [row] = report["evaluation"]["privacy"]["canaries"]["canaries"]
    page = response.content.decode()
    interval = row["exposure_interval"]
    assert f"[{interval['low']:.2f}, {interval['high']:.2f}]" in page and row["sample"]["reason"] in page
    assert f"{row['reference_sample']} of 10" in page and "reference secrets" in row["sample"]["reason"]


def test_report_opens_with_the_verdict_and_shows_the_audit(ada, dataset, client):
    from evaluation.audit import audit_report
    from evaluation.verdict import verdict

    evaluation = evaluation_json()
    audit = audit_report([5.0 + i for i in range(40)], [float(-i) for i in range(40)], delta=1e-5)
    evaluation["privacy"]["audit"] = {"canaries": 80, "delta": 1e-5, "model": audit}
    evaluation["privacy"]["claim"] = {"dp": True, "epsilon": 2.41, "delta": 1e-5, "accountant": "prv",
                                      "epsilon_unit": "per record", "epsilon_at_delta": {"delta": 1e-5, "epsilon": 0.5}}
    evaluation["verdict"] = verdict(evaluation)
    assert audit["epsilon_lower_bound"] > 0.5
    run = make_run(ada, dataset, evaluation=evaluation)
    client.force_login(ada)

    html = client.get(reverse("jobs:report", args=[run.pk])).content.decode()

    assert html.index('id="verdict"') < html.index('id="privacy-spent"')  # the verdict comes first
    assert "BUG" in html and "ABOVE the claimed" in html  # a perfect audit beats a claimed 0.5 at its delta
    assert f"{audit['epsilon_lower_bound']:.3f}" in html and 'id="audit"' in html
    assert "40 / 40" in html  # trained on / left out


def test_an_evaluation_from_before_the_audit_gets_a_verdict_that_says_so(ada, dataset, client):
    run = make_run(ada, dataset, evaluation=evaluation_json())
    client.force_login(ada)
    html = client.get(reverse("jobs:report", args=[run.pk])).content.decode()
    assert 'id="verdict"' in html and "predates the one-run audit" in html


def test_differences_say_what_the_private_data_adds_and_what_privacy_costs_with_intervals(ada, dataset, client):
    run = make_run(ada, dataset, evaluation=evaluation_json(heldout_loss=1.8))
    self_instruct = make_run(ada, dataset, baseline="self_instruct", evaluation=evaluation_json(heldout_loss=3.0),
                             age_minutes=5)
    nonprivate = make_run(ada, dataset, baseline="nonprivate", evaluation=evaluation_json(heldout_loss=1.9),
                          age_minutes=3)

    differences = {row["against"]: row for row in report_json(run)["differences"]}

    assert differences["self_instruct"]["other_run"] == self_instruct.pk
    assert differences["nonprivate"]["other_run"] == nonprivate.pk
    added = {figure["name"]: figure for figure in differences["self_instruct"]["figures"]}["heldout_loss_target"]
    assert added["difference"] == pytest.approx(-1.2) and added["high"] < 0 < added["high"] + 1.2
    assert added["reading"] == "KnowledgeSG lower: better"
    cost = {figure["name"]: figure for figure in differences["nonprivate"]["figures"]}["heldout_loss_target"]
    assert cost["low"] < 0 < cost["high"] and cost["reading"].startswith("no difference shown")
    assert {figure["name"]: figure for figure in differences["nonprivate"]["figures"]}["reconstruction_top1_rate"][
        "difference"] == pytest.approx(0.0)
    table = csv_section(report_csv(run), "differences (KnowledgeSG minus the baseline, 95% interval)")
    row = next(line for line in table if line["against"] == "self_instruct" and line["figure"].startswith("held-out"))
    assert float(row["difference"]) == pytest.approx(-1.2) and row["reading"] == "KnowledgeSG lower: better"
    client.force_login(ada)
    page = client.get(reverse("jobs:report", args=[run.pk])).content.decode()
    assert 'id="differences-self_instruct"' in page and "KnowledgeSG lower: better" in page


def test_no_differences_without_an_evaluated_knowledgesg_run_and_none_from_a_figure_without_interval(ada, dataset):
    nonprivate = make_run(ada, dataset, baseline="nonprivate", evaluation=evaluation_json())
    assert report_json(nonprivate)["differences"] == []
    run = make_run(ada, dataset, evaluation=evaluation_json(intervals=False), age_minutes=1)
    figures = {figure["name"]: figure for figure in report_json(run)["differences"][0]["figures"]}
    assert figures["membership_auc_loss"]["difference"] is None
    assert "has no figure with an interval" in figures["membership_auc_loss"]["reading"]


def test_a_judge_that_picks_by_position_gets_its_sentence_printed_and_no_win_rate(ada, dataset, client):
    run = make_run(ada, dataset, evaluation=evaluation_json(judge_by_position=True))
    problem = run_report(run)["evaluation"]["utility"]["win_rate"]["problem"]
    assert problem.startswith("the judge picked by position in 3 of 3 items")
    client.force_login(ada)

    html = client.get(reverse("jobs:report", args=[run.pk])).content.decode()
    headline, row = run_report(run)["headline"], report_comparison(run)[0]
    table = csv_section(report_csv(run), "comparison")
    text = comparison_table(report_comparison(run))

    utility = html.split("<h2>Utility</h2>")[1].split("</table>")[0]
    assert f'<span class="figure-problem">not given: {escape(problem)}</span>' in utility
    assert "0.500" not in utility  # 3 ties would have read as "as good as the base"
    assert "0.000 " + '<small class="interval">[0.00, 0.56], n 3</small>' in utility  # consistency, Wilson 0 of 3
    for figures in (headline, row):
        assert figures["win_rate"] is None and figures["win_rate_problem"] == problem
        assert figures["win_rate_low"] is None and figures["win_rate_n"] is None
        assert figures["judge_consistency"] == 0.0 and figures["judge_consistency_n"] == "3"
    assert table[0]["win-rate vs base"] == "" and table[0]["win-rate vs base: why not given"] == problem
    lines = text.splitlines()
    assert next(line for line in lines if line.startswith("win-rate vs base")).endswith("not given (see below)")
    assert f"run {run.pk}, win-rate vs base: not given: {problem}" in lines
    evaluation = run_report(run)["evaluation"]["utility"]["win_rate"]
    assert (evaluation["wins"], evaluation["losses"], evaluation["ties"], evaluation["n"]) == (0, 0, 3, 3)  # raw counts kept


def test_the_report_says_when_fewer_questions_were_judged_than_asked_for(ada, dataset, client):
    evaluation = evaluation_json()
    note = "64 questions were asked for but the dataset holds out only 3 records: ROUGE-L and the win-rate use 3"
    evaluation["utility"]["questions"] = {"requested": 64, "held_out": 3, "used": 3, "note": note}
    run = make_run(ada, dataset, evaluation=evaluation)
    client.force_login(ada)
    html = client.get(reverse("jobs:report", args=[run.pk])).content.decode()
    assert f'<p class="message warning" id="questions-note">{note}.</p>' in html
    evaluation["utility"]["questions"]["note"] = None
    quiet = make_run(ada, dataset, evaluation=evaluation)
    assert 'id="questions-note"' not in client.get(reverse("jobs:report", args=[quiet.pk])).content.decode()


def test_report_page_says_when_the_model_is_worse_than_the_base_on_held_out_loss(ada, dataset, client):
    from evaluation.utility import heldout_loss_finding

    evaluation = evaluation_json(heldout_loss=3.4)
    loss = evaluation["utility"]["heldout_loss"]
    loss["finding"] = heldout_loss_finding(loss["target"], loss["base"], distilled_by="smollm2-135m-instruct",
                                           base_model="smollm2-135m-instruct")
    run = make_run(ada, dataset, evaluation=evaluation)
    client.force_login(ada)
    page = client.get(reverse("jobs:report", args=[run.pk])).content.decode()
    assert 'id="heldout-loss-finding"' in page and "Worse than the untouched base model" in page
    assert "the professional model is the base model itself" in page


def _sampled_evaluation() -> dict:
    """An evaluation.json whose attacks and judge were sampled in looks (evaluation.sequential):
    reconstruction stopped at the first look with a leak, membership ran to its cap undecided, the
    judge stopped at the first look as uninformative; the stop records as the module writes them."""
    from evaluation.sequential import Decision, look_sizes, stop_record

    evaluation = evaluation_json()
    privacy, utility = evaluation["privacy"], evaluation["utility"]
    privacy["reconstruction"]["sample"] = stop_record(
        look_sizes(30, 3), look=1, unit="targets",
        decision=Decision("leak", "the interval [0.057, 0.510] of 3 of 8 lies above chance 0.033"))
    privacy["membership"]["sample"] = stop_record(
        look_sizes(12, 3), look=3, unit="records",
        decision=Decision("continue", "the AUC interval [0.400, 1.000] (6 members, 6 non-members) holds 0.5 and "
                                      "reaches 0.60"))
    utility["win_rate"]["sample"] = stop_record(
        look_sizes(64, 3), look=1, unit="questions",
        decision=Decision("uninformative", "the consistency interval [0.000, 0.264] of 0 of 16 lies below 0.60: "
                                           "the judge is uninformative"))
    return evaluation


RECONSTRUCTION_STOP = ("stopped at 8 of 30 targets (look 1 of 3): the interval [0.057, 0.510] of 3 of 8 lies above "
                       "chance 0.033")
MEMBERSHIP_STOP = "ran to the cap, 12 records (3 looks), without a decision: the AUC interval [0.400, 1.000]"
JUDGE_STOP = "stopped at 16 of 64 questions (look 1 of 3): the consistency interval [0.000, 0.264] of 0 of 16"


def test_each_sampled_figure_carries_its_size_cap_looks_and_stop_reason_in_json_and_comparison(ada, dataset):
    run = make_run(ada, dataset, evaluation=_sampled_evaluation())

    report, row = report_json(run), report_comparison(run)[0]

    # the run's report JSON (/jobs/ID/report.json, ksg_evaluate --json): its headline and its comparison row
    for figures in (report["headline"], report["comparison"][0], row):
        assert figures["reconstruction_sample"] == "8 of 30 targets, look 1 of 3 planned"
        assert figures["reconstruction_stop_reason"] == RECONSTRUCTION_STOP
        assert figures["membership_sample"] == "12 of 12 records, look 3 of 3 planned"
        assert figures["membership_stop_reason"].startswith(MEMBERSHIP_STOP)
        assert figures["judge_sample"] == "16 of 64 questions, look 1 of 3 planned"
        assert figures["judge_stop_reason"].startswith(JUDGE_STOP)
    assert report["evaluation"]["privacy"]["reconstruction"]["sample"]["n"] == 8


def test_csv_and_ksg_evaluate_give_the_sample_used_and_why_it_stopped(ada, dataset):
    run = make_run(ada, dataset, evaluation=_sampled_evaluation())

    rows = list(csv.reader(io.StringIO(report_csv(run))))
    header = rows[3]
    mine = dict(zip(header, rows[4]))
    assert mine["reconstruction: sample used"] == "8 of 30 targets, look 1 of 3 planned"
    assert mine["reconstruction: why sampling stopped"] == RECONSTRUCTION_STOP
    assert mine["membership inference: why sampling stopped"].startswith(MEMBERSHIP_STOP)
    assert mine["judge: sample used"] == "16 of 64 questions, look 1 of 3 planned"
    assert mine["judge: why sampling stopped"].startswith(JUDGE_STOP)

    table = comparison_table(report_comparison(run))
    assert f"run {run.pk}, name reconstruction (top-1, top-5, generation): {RECONSTRUCTION_STOP}" in table
    assert f"run {run.pk}, judge (win-rate, consistency; ROUGE-L on the same answers): {JUDGE_STOP}" in table
    assert re.search(r"reconstruction: sample used\s+8 of 30 targets, look 1 of 3 planned", table)
    assert re.search(r"reconstruction: why sampling stopped\s+see below", table)


def test_report_page_gives_each_samples_size_and_why_it_stopped(ada, dataset, client):
    run = make_run(ada, dataset, evaluation=_sampled_evaluation())
    client.force_login(ada)

    html = client.get(reverse("jobs:report", args=[run.pk])).content.decode()

    privacy = html.split('id="privacy-samples"')[1].split("</ul>")[0]
    assert "Name reconstruction, 8 of 30 targets, look 1 of 3 planned: " + escape(RECONSTRUCTION_STOP) in privacy
    assert "membership inference, 12 of 12 records, look 3 of 3 planned: " + escape(MEMBERSHIP_STOP) in privacy
    judge = html.split('id="judge-samples"')[1].split("</ul>")[0]
    assert "judge, 16 of 64 questions, look 1 of 3 planned" in judge and escape(JUDGE_STOP) in judge
    assert escape(RECONSTRUCTION_STOP) in html.split('id="reconstruction-sample"')[1].split("</p>")[0]
    # the verdict says it too, where the compliance officer reads first
    assert escape("Sample: " + RECONSTRUCTION_STOP) in html.split('id="verdict"')[1].split("</section>")[0]


def test_an_evaluation_of_fixed_size_has_no_stop_reason_and_says_nothing_about_one(ada, dataset, client):
    run = make_run(ada, dataset, evaluation=evaluation_json())
    client.force_login(ada)
    row = report_comparison(run)[0]
    assert row["reconstruction_sample"] is None and row["judge_stop_reason"] is None
    html = client.get(reverse("jobs:report", args=[run.pk])).content.decode()
    assert "sampling stopped" not in html and "stopped at" not in html
    assert "why sampling stopped" in report_csv(run) and "stopped at" not in comparison_table([row])
