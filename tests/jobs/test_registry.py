"""A job kind is defined in one place: its JobKindSpec, registered by its app. A kind registered
here, in a test, runs end to end through the engine with no migration, no task module and no
settings entry."""
from dataclasses import dataclass, field

import pytest
from celery import current_app
from django.core.exceptions import ValidationError

from jobs import kinds as kinds_module
from jobs import services
from jobs.kinds import (SERVER_QUEUE, ArtifactInput, JobKindError, JobKindSpec, JobParamsError, job_kind_spec,
                        job_kinds_executed)
from jobs.models import Job
from jobs.registry import job_kinds_register
from jobs.services import job_submit
from ksg_web.runs.pipeline import run_set_fields


@dataclass(frozen=True)
class EchoParams:
    """A kind that writes its text to an artifact."""

    text: str = field(default="hello", metadata={"help": "What to write."})


def echo_run(params: EchoParams, ctx) -> None:
    ctx.metric(step=1, length=len(params.text))
    ctx.artifact_dir.mkdir(parents=True, exist_ok=True)
    path = ctx.artifact_dir / "echo.txt"
    path.write_text(params.text)
    ctx.artifact(kind="report", path=path)


ECHO = JobKindSpec("echo", "Echo (a test kind)", SERVER_QUEUE, EchoParams, stage=f"{__name__}.echo_run",
                   time_limit=90)


@pytest.fixture()
def echo_registered(monkeypatch):
    """Registers ECHO for the test only (the registry is restored afterwards)."""
    monkeypatch.setattr(kinds_module, "_KINDS", dict(kinds_module._KINDS))
    job_kinds_register(ECHO)
    return ECHO


@pytest.mark.django_db
def test_a_kind_registered_with_its_spec_runs_end_to_end(echo_registered, make_user, monkeypatch):
    monkeypatch.setattr(services, "_job_enqueue", lambda job, task_name, queue: None)  # run it here, not on the broker
    job = job_submit(owner=make_user("ada"), kind="echo", params={"text": "from one place"})
    task = current_app.tasks["jobs.echo"]
    assert (task.soft_time_limit, task.time_limit) == (90, 90 + 300)
    assert "echo" in job_kinds_executed()

    task.apply(args=[job.pk], task_id=job.celery_task_id)

    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.kind_label == "Echo (a test kind)" and str(job).startswith("Echo (a test kind) #")
    (artifact,) = job.artifacts.all()
    assert artifact.path.endswith("echo.txt")
    assert job.events.filter(kind="metric").get().payload == {"step": 1, "length": 14}


@pytest.mark.django_db
def test_job_kind_is_checked_against_the_registry_not_a_migration(echo_registered, make_user):
    owner = make_user("ada")
    Job(kind="echo", owner=owner, params={"text": "hi"}).full_clean()
    with pytest.raises(ValidationError, match="unknown job kind 'nope'"):
        Job(kind="nope", owner=owner, params={"text": "hi"}).full_clean()
    with pytest.raises(JobParamsError, match="unknown job kind 'nope'"):
        job_submit(owner=owner, kind="nope", params={})


def test_a_kind_that_cannot_work_is_refused_at_registration(monkeypatch, settings):
    monkeypatch.setattr(kinds_module, "_KINDS", dict(kinds_module._KINDS))
    with pytest.raises(JobKindError, match="already registered with another spec"):
        job_kinds_register(JobKindSpec("selftest", "Another selftest", SERVER_QUEUE, EchoParams,
                                       stage=f"{__name__}.echo_run", time_limit=60))
    with pytest.raises(JobKindError, match="has a stage but no queue"):
        job_kinds_register(JobKindSpec("echo", "Echo", None, EchoParams, stage=f"{__name__}.echo_run", time_limit=60))
    with pytest.raises(JobKindError, match="longer than KSG_LONGEST_STAGE_SECONDS"):
        job_kinds_register(JobKindSpec("echo", "Echo", SERVER_QUEUE, EchoParams, stage=f"{__name__}.echo_run",
                                       time_limit=settings.KSG_LONGEST_STAGE_SECONDS + 1))
    assert "echo" not in kinds_module._KINDS


def test_every_kind_the_apps_register_is_complete():
    executed = set(job_kinds_executed())
    assert executed == {"selftest", "dp_finetune", "finetune_private", "generate", "filter", "distill",
                        "finetune_target", "evaluate", "export"}
    for kind in executed:
        spec = job_kind_spec(kind)
        assert spec.function("stage") is not None and spec.label and spec.time_limit > 0
    assert job_kind_spec("dp_finetune").function("settle_lost").__name__ == "dp_finetune_settle_lost"
    assert job_kind_spec("run").function("child_finished").__name__ == "run_child_finished"
    # a run fills (and refuses from a user) exactly the artifact inputs a stage's spec declares
    assert run_set_fields("generate") == ("adapter_artifact",)
    assert run_set_fields("evaluate") == ("adapter_artifact", "synthetic_artifact", "dp_adapter_artifact")
    assert job_kind_spec("evaluate").inputs[1] == ArtifactInput("synthetic_artifact", "synthetic_data",
                                                                "synthetic_dataset.jsonl", required=False)
