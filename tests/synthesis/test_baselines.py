"""The baselines run through the same pipeline, worker and evaluation as KnowledgeSG, on a tiny
model: dp_direct (the stage-1 adapter is the model), self_instruct (no private data, no epsilon),
nonprivate (no DP: refused unless the dataset allows it; a non-private release in the ledger)."""
import json
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from jobs.kinds import JobParamsError
from jobs.models import Job
from ksg_web.runs.pipeline import BASELINES, run_stage_params, run_submit
from ksg_web.runs.presets import preset_stages
from privacy.models import LedgerEntry
from privacy.selectors import dataset_balance
from privacy.services import NonPrivateRefused
from tests.support.datasets import register_demo_dataset
from tests.support.tiny_model import tiny_model_dir
from tests.synthesis.test_pipeline import finished, tiny_stages

pytestmark = pytest.mark.django_db(transaction=True)

EVALUATE = {"evaluate.max_records": 8, "evaluate.reconstruction_targets": 3, "evaluate.candidate_set_size": 5,
            "evaluate.generation_records": 2, "evaluate.max_new_tokens": 6, "evaluate.max_length": 64,
            "evaluate.canary_references": 20, "evaluate.sequential_looks": 1, "finetune_private.epochs": 1.0,
            "finetune_private.logical_batch_size": 8}


@pytest.fixture()
def clinic(tmp_path, settings, make_user):
    from synthesis.prompts import DISTILL_SYSTEM, GENERATION_SYSTEM, GENERATION_USER, seed_instructions

    settings.KSG_PRIVATE_DIR = tmp_path / "private"
    owner = make_user("ada")
    dataset, _ = register_demo_dataset(tmp_path, owner, n=40, seed=5, canaries=2, allow_nonprivate_baselines=True)
    public = list(seed_instructions("medical")) + list(GENERATION_SYSTEM.values()) + [GENERATION_USER] + list(DISTILL_SYSTEM.values())
    return owner, dataset, tiny_model_dir(tmp_path / "tiny", public)


def evaluation_of(run: Job) -> dict:
    return evaluation_of_job(run.children.get(kind="evaluate"))


@pytest.mark.parametrize("baseline", ["dp_direct", "self_instruct", "nonprivate", "scrubbed"])
def test_each_baseline_runs_its_stages_and_ends_with_an_evaluation(celery_session_worker, clinic, baseline):
    owner, dataset, model_dir = clinic
    run = run_submit(owner=owner, dataset=dataset, stages=tiny_stages(model_dir, baseline=baseline, **EVALUATE),
                     preset="demo", baseline=baseline)

    run = finished(run.pk)

    assert run.status == "succeeded", run.error
    children = {child.kind: child for child in run.children.order_by("pk")}
    assert list(children) == list(BASELINES[baseline])
    report = evaluation_of(run)
    assert report["model"]["baseline"] == baseline
    headline = run.events.filter(kind="metric").get().payload  # the run keeps its evaluation's figures
    assert headline["stage"] == "evaluate"
    assert headline["membership_auc"] == report["privacy"]["membership"]["loss"]["auc"]
    assert headline["canary_exposure_mean"] == report["privacy"]["canaries"]["mean_exposure"]
    final = children[BASELINES[baseline][-2]]
    assert children["evaluate"].params["adapter_artifact"] == final.artifacts.get(kind="adapter").pk
    assert report["privacy"]["canaries"]["canaries"] and len(report["privacy"]["canaries"]["canaries"]) == 2
    assert report["records"]["train"] == 8  # canary records are measured by exposure, not as members
    assert {f["subject"] for f in report["verdict"]} >= {"guarantee", "audit", "name reconstruction"}
    assert "without audit canaries" in report["privacy"]["audit"]["problem"]  # said, not skipped
    ledger = list(LedgerEntry.objects.filter(budget__dataset=dataset).values_list("kind", flat=True))
    balance = dataset_balance(dataset=dataset)
    if baseline == "dp_direct":
        assert ledger == ["reserve", "commit", "release"] and 0 < balance.spent <= 4
        # the stage-1 adapter IS the model: audited once
        assert children["evaluate"].params["dp_adapter_artifact"] == children["evaluate"].params["adapter_artifact"]
        claim = report["privacy"]["claim"]
        assert claim["dp"] is True and claim["epsilon_at_delta"]["epsilon"] > claim["epsilon"] > 0
    elif baseline == "self_instruct":
        assert ledger == [] and balance.spent == 0
        assert children["generate"].params["adapter_artifact"] == 0
        assert report["model"]["baseline"] == "self_instruct"
    else:
        assert ledger == ["nonprivate"] and balance.spent == 0 and balance.nonprivate_releases == 1
        entry = LedgerEntry.objects.get(kind="nonprivate")
        assert entry.job == children["finetune_private"] and entry.delta == 1.0 and "without DP" in entry.reason
        assert children["finetune_private"].params["records"] == ("raw" if baseline == "nonprivate" else "scrubbed")
        assert report["privacy"]["claim"] == {"dp": False}
        heldout = children["finetune_private"].events.filter(kind="metric", payload__has_key="heldout_loss")
        assert heldout.exists() and all(event.payload["heldout_loss"] > 0 for event in heldout)
        scrub_metrics = children["finetune_private"].events.filter(kind="metric", payload__has_key="scrubbed_spans")
        if baseline == "scrubbed":  # the detector's masking is on record: demo records all name someone
            assert scrub_metrics.get().payload["scrubbed_name"] >= dataset.train_count - 2
        else:
            assert not scrub_metrics.exists()


def test_a_nonprivate_baseline_is_refused_unless_the_dataset_allows_it(clinic):
    owner, dataset, model_dir = clinic
    dataset.allow_nonprivate_baselines = False
    dataset.save()
    with pytest.raises(NonPrivateRefused, match="does not allow non-private baselines"):
        run_submit(owner=owner, dataset=dataset, stages=tiny_stages(model_dir), baseline="nonprivate")
    assert not Job.objects.exists() and not LedgerEntry.objects.exists()


def test_run_parameters_are_checked_per_baseline(clinic):
    _, _, model_dir = clinic
    stages = tiny_stages(model_dir)
    with pytest.raises(JobParamsError, match="unknown baseline 'scrubbing'"):
        run_stage_params(stages, "scrubbing")
    with pytest.raises(JobParamsError, match="finetune_private.records is 'scrubbed' in the scrubbed baseline"):
        run_stage_params({**stages, "finetune_private": {**stages["finetune_private"], "records": "raw"}}, "scrubbed")
    assert run_stage_params(stages, "scrubbed")["finetune_private"]["records"] == "scrubbed"
    assert run_stage_params(stages, "nonprivate")["finetune_private"]["records"] == "raw"
    # a run may sample the adapter's user turn; self_instruct has no adapter and asks with the seeds
    user_turn = tiny_stages(model_dir, **{"generate.prompting": "user_turn"})
    with pytest.raises(JobParamsError, match="generate.prompting is 'few_shot' in the self_instruct baseline"):
        run_stage_params(user_turn, "self_instruct")
    assert preset_stages("paper", baseline="self_instruct")["generate"]["prompting"] == "few_shot"
    assert preset_stages("paper")["generate"]["prompting"] == "user_turn"
    own = tiny_stages(model_dir, baseline="self_instruct")
    assert run_stage_params(own, "self_instruct")["generate"]["prompting"] == "few_shot"
    with pytest.raises(JobParamsError, match="generate.adapter_artifact must not be set"):
        run_stage_params({**own, "generate": {**own["generate"], "adapter_artifact": 3}}, "self_instruct")
    with pytest.raises(JobParamsError, match="evaluate.adapter_artifact is set by the run"):
        run_stage_params({**stages, "evaluate": {**stages["evaluate"], "adapter_artifact": 3}}, "dp_direct")
    assert list(run_stage_params(stages, "nonprivate")) == ["finetune_private", "evaluate"]
    missing = {kind: value for kind, value in stages.items() if kind != "finetune_private"}
    with pytest.raises(JobParamsError, match="missing \\['finetune_private'\\]"):
        run_stage_params(missing, "nonprivate")


def test_ksg_evaluate_prints_the_numbers_of_the_report_and_can_evaluate_again(celery_session_worker, clinic):
    import io

    from django.core.management import CommandError, call_command

    owner, dataset, model_dir = clinic
    run = finished(run_submit(owner=owner, dataset=dataset, stages=tiny_stages(model_dir, **EVALUATE),
                              baseline="dp_direct").pk)
    report = evaluation_of(run)
    auc = report["privacy"]["membership"]["loss"]["auc"]

    table = io.StringIO()
    call_command("ksg_evaluate", "--run", str(run.pk), stdout=table)
    lines = {line.split("  ")[0]: line for line in table.getvalue().splitlines()}
    assert f"{auc:.4g}" in lines["membership AUC (loss)"] and "dp_direct" in lines["baseline"]

    as_json = io.StringIO()
    call_command("ksg_evaluate", "--run", str(run.pk), "--json", stdout=as_json)
    exported = json.loads(as_json.getvalue())
    assert exported["evaluation"]["privacy"]["membership"]["loss"]["auc"] == auc
    assert exported["comparison"][0]["membership_auc_loss"] == auc

    with pytest.raises(CommandError, match="add --again"):
        call_command("ksg_evaluate", "--run", str(run.pk), "--set", "max_records=4")
    call_command("ksg_evaluate", "--run", str(run.pk), "--again", "--set", "max_records=4", stdout=io.StringIO(),
                 stderr=io.StringIO())
    again = run.children.filter(kind="evaluate").order_by("-pk").first()
    assert run.children.filter(kind="evaluate").count() == 2 and again.params["max_records"] == 4
    assert evaluation_of_job(again)["records"]["train"] == 4


def evaluation_of_job(job: Job) -> dict:
    """The evaluation's server-readable report (its aggregates; the whole one is client-only)."""
    return json.loads((Path(django_settings.KSG_ARTIFACT_DIR) / job.artifacts.get(kind="report", area="server").path).read_text())
