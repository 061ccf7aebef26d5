"""Run approval: a run above its dataset's epsilon threshold waits without reserving anything
until a compliance officer approves it (its first stage is then submitted with the reservation)
or rejects it (it ends cancelled); each decision leaves an audit entry in the same transaction."""
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from ksg_web.runs import pipeline
from jobs.models import Job
from ksg_web.runs.pipeline import run_approve, run_cancel, run_reject, run_submit
from jobs.services import JobStateError
from privacy.models import AuditEntry, LedgerEntry
from privacy.selectors import dataset_balance
from privacy.services import (AccessRefused, BudgetConfigError, BudgetExceeded, NonPrivateRefused,
                              approval_threshold_change, budget_reserve)
from ksg_web.runs.presets import preset_stages
from tests.privacy.factories import make_dataset, make_dp_job

# Not transactional: on_commit never fires, so approved stages are created and reserved but
# never handed to a broker; these tests are about the decision, not the worker.
pytestmark = pytest.mark.django_db


@pytest.fixture()
def people(make_user):
    return {"owner": make_user("olive"), "officer": make_user("cleo", role="compliance_officer"),
            "admin": make_user("root", role="admin"), "other": make_user("dan")}


@pytest.fixture()
def clinic(people):
    """A dataset with limit 10 whose runs above epsilon 2 need approval."""
    dataset = make_dataset(people["owner"], epsilon_limit="10")
    return approval_threshold_change(dataset=dataset, threshold="2", actor=people["owner"],
                                     comment="board decision 2024-07: above 2 needs a second look")


def stages(epsilon: float, baseline: str = "dp_direct") -> dict:
    return preset_stages("demo", target_epsilon=epsilon, baseline=baseline)


def submit(owner, dataset, epsilon: float, baseline: str = "dp_direct") -> Job:
    return run_submit(owner=owner, dataset=dataset, stages=stages(epsilon, baseline), preset="demo", baseline=baseline)


def status_payloads(run: Job) -> list[dict]:
    return [event.payload for event in run.events.filter(kind="status").order_by("seq")]


def test_a_run_above_the_threshold_waits_and_reserves_nothing(people, clinic):
    run = submit(people["owner"], clinic, 4)

    run.refresh_from_db()
    assert run.status == Job.Status.AWAITING_APPROVAL and not run.is_finished
    assert not run.children.exists() and not LedgerEntry.objects.exists()
    assert dataset_balance(dataset=clinic).reserved == 0
    assert status_payloads(run) == [{"status": "awaiting_approval", "stage": "dp_finetune",
                                     "threshold": "2.000000", "target_epsilon": "4.000000"}]


@pytest.mark.parametrize("epsilon", [1, 2])
def test_a_run_at_or_below_the_threshold_starts_at_once(people, clinic, epsilon):
    run = submit(people["owner"], clinic, epsilon)

    assert run.status == Job.Status.RUNNING
    stage = run.children.get()
    assert stage.kind == "dp_finetune" and stage.status == Job.Status.QUEUED
    assert LedgerEntry.objects.get(job=stage).epsilon == Decimal(epsilon)


def test_without_a_threshold_no_run_waits(people):
    dataset = make_dataset(people["owner"], name="open")
    assert submit(people["owner"], dataset, 9).status == Job.Status.RUNNING


def test_a_run_that_reads_no_private_data_never_waits(people, clinic):
    run = submit(people["owner"], clinic, 9, baseline="self_instruct")
    assert run.status == Job.Status.RUNNING and run.children.get().kind == "generate"


def test_what_cannot_fit_the_budget_is_refused_at_submission_even_when_it_would_wait(people, clinic):
    budget_reserve(job=make_dp_job(people["owner"], clinic), epsilon=7, actor=people["owner"])  # 3 left

    with pytest.raises(BudgetExceeded, match="at most 3.000000 is left"):
        submit(people["owner"], clinic, 4)
    assert not Job.objects.filter(kind="run").exists()


def test_parameters_that_cannot_run_are_refused_at_submission(people, clinic):
    from jobs.kinds import JobParamsError

    too_big = preset_stages("demo", target_epsilon=4, overrides=["dp_finetune.logical_batch_size=5000"])
    with pytest.raises(JobParamsError, match="fewer than logical_batch_size"):
        run_submit(owner=people["owner"], dataset=clinic, stages=too_big, baseline="dp_direct")
    assert not Job.objects.exists()


def test_approval_submits_the_first_stage_with_its_reservation_and_records_the_decision(people, clinic):
    run = submit(people["owner"], clinic, 4)

    run = run_approve(run=run, actor=people["officer"], comment="within the quarterly plan")

    run.refresh_from_db()
    assert run.status == Job.Status.RUNNING
    stage = run.children.get()
    assert (stage.kind, stage.status, stage.owner) == ("dp_finetune", Job.Status.QUEUED, people["owner"])
    reserve = LedgerEntry.objects.get(job=stage)
    assert (reserve.kind, reserve.epsilon, reserve.actor) == ("reserve", Decimal(4), people["owner"])
    entry = AuditEntry.objects.get(action=AuditEntry.Action.RUN_APPROVED)
    assert (entry.actor, entry.job, entry.dataset, entry.comment) == (people["officer"], run, clinic,
                                                                     "within the quarterly plan")
    assert entry.details == {"threshold": "2.000000", "target_epsilon": "4.000000"}
    assert status_payloads(run)[-1] == {"status": "running", "stage": "dp_finetune", "approved_by": "cleo"}


def test_the_decision_and_the_stage_are_one_transaction(people, clinic, monkeypatch):
    run = submit(people["owner"], clinic, 4)

    def broken_submit(run):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(pipeline, "_first_stage_submit", broken_submit)
    with pytest.raises(RuntimeError):
        run_approve(run=run, actor=people["officer"])
    run.refresh_from_db()
    assert run.status == Job.Status.AWAITING_APPROVAL
    assert not AuditEntry.objects.filter(job=run).exists()


def test_approval_when_the_budget_no_longer_fits_fails_the_run_with_the_reason(people, clinic):
    run = submit(people["owner"], clinic, 4)
    budget_reserve(job=make_dp_job(people["owner"], clinic), epsilon=8, actor=people["owner"])  # meanwhile

    run = run_approve(run=run, actor=people["officer"])

    run.refresh_from_db()
    assert run.status == Job.Status.FAILED
    assert "Refused: job" in run.error and "at most 2.000000 is left" in run.error
    assert not run.children.exists()  # the refused stage left nothing behind
    assert not LedgerEntry.objects.filter(job__parent=run).exists()
    assert AuditEntry.objects.filter(action=AuditEntry.Action.RUN_APPROVED, job=run).count() == 1


def test_rejection_needs_a_comment_and_cancels_the_run(people, clinic):
    run = submit(people["owner"], clinic, 4)
    with pytest.raises(ValueError, match="say why"):
        run_reject(run=run, actor=people["officer"], comment="  ")
    assert not AuditEntry.objects.filter(job=run).exists()

    run = run_reject(run=run, actor=people["officer"], comment="epsilon 4 is too much for patient notes")

    run.refresh_from_db()
    assert run.status == Job.Status.CANCELLED and run.is_finished
    assert run.error == "rejected by cleo: epsilon 4 is too much for patient notes"
    entry = AuditEntry.objects.get(action=AuditEntry.Action.RUN_REJECTED)
    assert (entry.actor, entry.job, entry.comment) == (people["officer"], run, "epsilon 4 is too much for patient notes")
    assert not run.children.exists() and not LedgerEntry.objects.exists()


def test_only_officers_decide_and_never_on_their_own_run(people, clinic):
    run = submit(people["owner"], clinic, 4)
    for actor in (people["owner"], people["other"]):
        with pytest.raises(AccessRefused):
            run_approve(run=run, actor=actor)
        with pytest.raises(AccessRefused):
            run_reject(run=run, actor=actor, comment="no")
    own = submit(people["admin"], clinic, 4)
    with pytest.raises(AccessRefused, match="another compliance officer"):
        run_approve(run=own, actor=people["admin"])

    run_approve(run=run, actor=people["admin"])  # administrators decide too
    with pytest.raises(JobStateError, match="not a run awaiting approval"):
        run_approve(run=run, actor=people["officer"])
    assert AuditEntry.objects.filter(action=AuditEntry.Action.RUN_APPROVED).count() == 1


def test_the_owner_may_cancel_a_waiting_run(people, clinic):
    run = submit(people["owner"], clinic, 4)
    run_cancel(run=run, actor=people["owner"])
    run.refresh_from_db()
    assert run.status == Job.Status.CANCELLED
    with pytest.raises(JobStateError):
        run_approve(run=run, actor=people["officer"])


def test_a_nonprivate_baseline_is_above_every_threshold(people):
    dataset = make_dataset(people["owner"], name="open-notes")
    dataset.allow_nonprivate_baselines = True
    dataset.save()
    approval_threshold_change(dataset=dataset, threshold="50", actor=people["admin"], comment="policy")

    run = submit(people["owner"], dataset, 1, baseline="nonprivate")
    assert run.status == Job.Status.AWAITING_APPROVAL and not LedgerEntry.objects.exists()
    assert run.params["approval"]["target_epsilon"] == "unbounded"

    run_approve(run=run, actor=people["officer"])
    stage = run.children.get()
    assert stage.kind == "finetune_private" and LedgerEntry.objects.get(job=stage).kind == "nonprivate"


def test_a_nonprivate_baseline_the_dataset_does_not_allow_is_refused_before_it_waits(people, clinic):
    with pytest.raises(NonPrivateRefused):
        submit(people["owner"], clinic, 1, baseline="nonprivate")
    assert not Job.objects.exists()


def test_the_threshold_changes_only_through_the_audited_service(people, clinic):
    with pytest.raises(AccessRefused):
        approval_threshold_change(dataset=clinic, threshold="5", actor=people["other"], comment="mine now")
    with pytest.raises(AccessRefused):  # officers decide on runs; the owner and administrators set policy
        approval_threshold_change(dataset=clinic, threshold="5", actor=people["officer"], comment="x")
    with pytest.raises(BudgetConfigError, match="say why"):
        approval_threshold_change(dataset=clinic, threshold="5", actor=people["owner"], comment="")
    with pytest.raises(BudgetConfigError):
        approval_threshold_change(dataset=clinic, threshold="-1", actor=people["owner"], comment="x")

    approval_threshold_change(dataset=clinic, threshold=None, actor=people["admin"], comment="no longer needed")

    clinic.refresh_from_db()
    assert clinic.approval_epsilon_threshold is None
    changes = AuditEntry.objects.filter(action=AuditEntry.Action.APPROVAL_THRESHOLD_CHANGED).order_by("id")
    assert [entry.details["approval_epsilon_threshold"] for entry in changes] == [
        {"before": None, "after": "2.000000"}, {"before": "2.000000", "after": None}]
    assert changes.last().comment == "no longer needed"


# -- the approvals page -----------------------------------------------------------------------

def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_approvals_page_lists_waiting_runs_with_their_figures(people, clinic):
    run = submit(people["owner"], clinic, 4)
    response = client_for(people["officer"]).get(reverse("compliance:approvals"))
    assert response.status_code == 200
    html = response.content.decode()
    assert f'id="approval-{run.pk}"' in html and "4.000000" in html and "2.000000" in html
    assert reverse("compliance:approve", args=[run.pk]) in html and reverse("compliance:reject", args=[run.pk]) in html


def test_approving_and_rejecting_from_the_page(people, clinic):
    officer = client_for(people["officer"])
    first, second = submit(people["owner"], clinic, 3), submit(people["owner"], clinic, 4)

    response = officer.post(reverse("compliance:approve", args=[first.pk]), {"comment": "ok"})
    assert response.status_code == 302
    response = officer.post(reverse("compliance:reject", args=[second.pk]), {"comment": ""})
    assert response.status_code == 302
    second.refresh_from_db()
    assert second.status == Job.Status.AWAITING_APPROVAL  # a rejection without a reason is not taken
    officer.post(reverse("compliance:reject", args=[second.pk]), {"comment": "too much"})

    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == Job.Status.RUNNING and second.status == Job.Status.CANCELLED
    page = officer.get(reverse("compliance:approvals")).content.decode()
    assert 'id="no-waiting"' in page and "too much" in page  # the recent decisions


def test_a_data_scientist_cannot_decide_from_the_page(people, clinic):
    run = submit(people["owner"], clinic, 4)
    response = client_for(people["owner"]).post(reverse("compliance:approve", args=[run.pk]), {"comment": ""})
    assert response.status_code == 403
    run.refresh_from_db()
    assert run.status == Job.Status.AWAITING_APPROVAL
