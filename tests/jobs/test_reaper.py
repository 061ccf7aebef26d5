"""The heartbeat of a running stage and the reaper that settles jobs whose worker vanished."""
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from jobs.kinds import params_as_dict, params_parse
from jobs.models import Job
from jobs.reaper import jobs_reap
from jobs.runner import job_execute
from jobs.services import job_event_record, job_start
from privacy.dp import accountant
from privacy.models import LedgerEntry
from privacy.selectors import dataset_balance
from privacy.services import budget_reserve
from tests.conftest import wait_until
from tests.privacy.factories import make_dataset

pytestmark = pytest.mark.django_db(transaction=True)


def _lost_dp_job(owner, dataset, *, steps_with_noise: int, silent_for: float, parent=None) -> Job:
    """A stage-1 job as a SIGKILLed worker leaves it: running, reserved, `epsilon` events for the
    steps that drew noise, and no heartbeat for `silent_for` seconds."""
    params = params_as_dict(params_parse("dp_finetune", {"target_epsilon": 4.0, "steps": 50}))
    job = Job.objects.create(kind="dp_finetune", owner=owner, dataset=dataset, params=params,
                             celery_task_id="t-1", parent=parent)
    budget_reserve(job=job, epsilon=4, actor=owner)
    job_start(job_id=job.pk, celery_task_id="t-1")
    sigma, rate = 1.3, 0.01
    for step in range(1, steps_with_noise + 1):
        job_event_record(job_id=job.pk, kind="epsilon", payload={
            "step": step, "planned_steps": 50, "noise_multiplier": sigma, "sample_rate": rate,
            "epsilon": accountant.epsilon_compute(sample_rate=rate, noise_multiplier=sigma, steps=step,
                                                  delta=dataset.budget.delta)})
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=silent_for))
    return job


def test_a_silent_dp_job_is_failed_with_the_epsilon_of_its_noised_steps_committed(make_user):
    owner = make_user("ada")
    dataset = make_dataset(owner, epsilon_limit="10")
    run = Job.objects.create(kind="run", owner=owner, dataset=dataset, status="running", params={"baseline": "dp_direct"})
    job = _lost_dp_job(owner, dataset, steps_with_noise=3, silent_for=600, parent=run)

    assert jobs_reap(timeout_seconds=300) == [job.pk]

    job.refresh_from_db()
    run.refresh_from_db()
    assert job.status == "failed" and job.error.startswith("worker lost: no heartbeat since")
    entries = {entry.kind: entry for entry in LedgerEntry.objects.filter(job=job)}
    assert list(entries) == ["reserve", "commit", "release"]
    spent = accountant.epsilon_compute(sample_rate=0.01, noise_multiplier=1.3, steps=3, delta=dataset.budget.delta)
    assert float(entries["commit"].epsilon) == pytest.approx(spent, abs=1e-6) and entries["commit"].mechanism["steps"] == 3
    balance = dataset_balance(dataset=dataset)
    assert balance.reserved == 0 and float(balance.spent) == pytest.approx(spent, abs=1e-6)
    assert run.status == "failed"

    assert jobs_reap(timeout_seconds=300) == []  # a second pass finds nothing: no double settlement
    assert LedgerEntry.objects.filter(job=job).count() == 3


def test_a_lost_job_that_took_no_noised_step_gets_its_whole_reservation_back(make_user):
    owner = make_user("ada")
    dataset = make_dataset(owner, epsilon_limit="10")
    job = _lost_dp_job(owner, dataset, steps_with_noise=0, silent_for=600)
    assert jobs_reap(timeout_seconds=300) == [job.pk]
    assert list(LedgerEntry.objects.filter(job=job).values_list("kind", flat=True)) == ["reserve", "release"]
    assert dataset_balance(dataset=dataset).left == 10


def test_a_job_with_a_recent_heartbeat_is_left_alone(make_user):
    owner = make_user("ada")
    dataset = make_dataset(owner, epsilon_limit="10")
    job = _lost_dp_job(owner, dataset, steps_with_noise=2, silent_for=30)
    assert jobs_reap(timeout_seconds=300) == []
    job.refresh_from_db()
    assert job.status == "running" and LedgerEntry.objects.filter(job=job).count() == 1


def test_a_late_redelivery_of_a_reaped_job_does_nothing(make_user):
    owner = make_user("ada")
    dataset = make_dataset(owner, epsilon_limit="10")
    job = _lost_dp_job(owner, dataset, steps_with_noise=1, silent_for=600)
    jobs_reap(timeout_seconds=300)

    def must_not_run(params, ctx):
        raise AssertionError("a reaped job ran again")

    assert job_execute(job_id=job.pk, celery_task_id="t-1", stage=must_not_run) == "skipped"
    assert LedgerEntry.objects.filter(job=job).count() == 3


def test_a_running_stage_keeps_its_heartbeat_fresh(make_user, settings):
    settings.KSG_HEARTBEAT_SECONDS = 0.2
    owner = make_user("ada")
    job = Job.objects.create(kind="selftest", owner=owner, params={"steps": 1}, celery_task_id="t-2")
    beats = []

    def quiet_stage(params, ctx):  # no events for a while: only the heartbeat thread writes
        start = Job.objects.get(pk=job.pk).heartbeat_at
        beats.append(wait_until(lambda: Job.objects.get(pk=job.pk).heartbeat_at, lambda at: at and at != start,
                                timeout=10))

    assert job_execute(job_id=job.pk, celery_task_id="t-2", stage=quiet_stage) == "succeeded"
    assert beats and beats[0] is not None


def test_ksg_reap_reports_what_it_settled(make_user):
    owner = make_user("ada")
    job = _lost_dp_job(owner, make_dataset(owner, epsilon_limit="10"), steps_with_noise=1, silent_for=900)
    out = StringIO()
    call_command("ksg_reap", "--timeout", "300", stdout=out)
    assert f"reaped job {job.pk}" in out.getvalue() and "1 job(s) reaped" in out.getvalue()


def _stamp(job: Job, *, silent_for: float, finished: bool = False) -> None:
    """Move a job's last sign of life (and its end, if finished) `silent_for` seconds back."""
    at = timezone.now() - timedelta(seconds=silent_for)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=at, started_at=at, **({"finished_at": at} if finished else {}))


def test_a_run_is_never_reaped_by_its_own_silence_while_its_stage_beats(make_user):
    owner = make_user("ada")
    dataset = make_dataset(owner, epsilon_limit="10")
    run = Job.objects.create(kind="run", owner=owner, dataset=dataset, status="running", params={"baseline": "dp_direct"})
    stage = _lost_dp_job(owner, dataset, steps_with_noise=2, silent_for=5, parent=run)
    _stamp(run, silent_for=3600)  # a run has no worker: its stamp moves only with its own events

    assert jobs_reap(timeout_seconds=300) == []

    run.refresh_from_db()
    stage.refresh_from_db()
    assert run.status == "running" and stage.status == "running"


def test_a_reaped_stage_ends_its_run_and_the_run_itself_is_not_reaped(make_user):
    owner = make_user("ada")
    dataset = make_dataset(owner, epsilon_limit="10")
    run = Job.objects.create(kind="run", owner=owner, dataset=dataset, status="running", params={"baseline": "dp_direct"})
    stage = _lost_dp_job(owner, dataset, steps_with_noise=2, silent_for=600, parent=run)
    _stamp(run, silent_for=3600)

    assert jobs_reap(timeout_seconds=300) == [stage.pk]  # the stage, by its own heartbeat; not the run

    run.refresh_from_db()
    assert run.status == "failed" and f"stage dp_finetune (job {stage.pk}) failed: worker lost" in run.error


def test_a_run_left_running_after_its_last_stage_ended_is_settled_by_the_reaper(make_user):
    owner = make_user("ada")
    dataset = make_dataset(owner, epsilon_limit="10")
    run = Job.objects.create(kind="run", owner=owner, dataset=dataset, status="running", params={"baseline": "dp_direct"})
    first = Job.objects.create(kind="dp_finetune", owner=owner, dataset=dataset, parent=run, status="succeeded")
    last = Job.objects.create(kind="evaluate", owner=owner, dataset=dataset, parent=run, status="succeeded")
    _stamp(first, silent_for=900, finished=True)
    _stamp(last, silent_for=30, finished=True)  # the worker died between finishing it and advancing the run

    assert jobs_reap(timeout_seconds=300) == []
    run.refresh_from_db()
    assert run.status == "running"  # too recent: the worker may still be advancing it

    _stamp(last, silent_for=600, finished=True)
    jobs_reap(timeout_seconds=300)
    run.refresh_from_db()
    assert run.status == "succeeded"


def test_a_stage_that_ends_after_its_run_says_so_and_lists_the_outputs_it_kept(make_user, settings, tmp_path):
    from ksg_web.runs.pipeline import run_cancel, run_child_finished
    from jobs.services import artifact_record, job_succeed

    settings.KSG_ARTIFACT_DIR = tmp_path
    owner = make_user("ada")
    dataset = make_dataset(owner, epsilon_limit="10")
    run = Job.objects.create(kind="run", owner=owner, dataset=dataset, status="running", params={"baseline": "dp_direct"})
    stage = _lost_dp_job(owner, dataset, steps_with_noise=2, silent_for=1, parent=run)
    run_cancel(run=run, actor=owner)  # the stage's worker is on its last step: it finishes anyway
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_model.safetensors").write_bytes(b"weights")
    artifact = artifact_record(job_id=stage.pk, kind="adapter", path=tmp_path / "adapter")
    job_succeed(job_id=stage.pk)

    run_child_finished(child_id=stage.pk)
    run_child_finished(child_id=stage.pk)  # a redelivered task finishing it again says nothing new

    run.refresh_from_db()
    assert run.status == "cancelled"
    late = list(stage.events.filter(kind="log", payload__after_run_ended=True).values_list("payload", flat=True))
    assert len(late) == 1 and late[0]["artifacts"] == [artifact.pk]
    assert f"ended succeeded after run {run.pk} had ended cancelled" in late[0]["message"]
    assert f"adapter adapter (artifact {artifact.pk})" in late[0]["message"]
    assert run.events.filter(kind="log", payload__after_run_ended=True, payload__stage="dp_finetune").count() == 1
    assert Job.objects.get(pk=stage.pk).artifacts.get().pk == artifact.pk

    stopped = Job.objects.create(kind="evaluate", owner=owner, dataset=dataset, parent=run, status="cancelled")
    run_child_finished(child_id=stopped.pk)  # a stage that stopped as its cancelled run asked: nothing to say
    assert not stopped.events.exists()


def test_a_stage_reaped_while_its_worker_still_runs_stops_at_its_next_step(make_user, settings):
    settings.KSG_HEARTBEAT_SECONDS = 3600  # the heartbeat thread stamps once, at the start
    owner = make_user("ada")
    job = Job.objects.create(kind="selftest", owner=owner, params={"steps": 1}, celery_task_id="t-3")
    steps = []

    def stalled_stage(params, ctx):
        ctx.check()
        steps.append(1)

        def stall_then_reap():  # a stall (a swapped-out host, a stuck database) longer than the timeout
            _stamp(job, silent_for=600)  # again if the heartbeat thread's one beat landed after it
            return jobs_reap(timeout_seconds=300)

        wait_until(stall_then_reap, lambda reaped: reaped == [job.pk], timeout=30)
        ctx.check()
        steps.append(2)  # never reached: the stage stops instead of working for a job that is over

    assert job_execute(job_id=job.pk, celery_task_id="t-3", stage=stalled_stage) == "failed"
    job.refresh_from_db()
    assert steps == [1] and job.error.startswith("worker lost")
    messages = [payload["message"] for payload in job.events.filter(kind="log").values_list("payload", flat=True)]
    assert any("while this worker still ran it; the stage stopped at its next step" in m for m in messages), messages
