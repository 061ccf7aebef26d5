"""The rules a first stage must pass before it exists (issue 20: one home each) hold the same on
both paths: the stage's own submission (dp_finetune_submit / finetune_private_submit, which a run
below its approval threshold goes through) and a run's check before it waits for approval
(run_first_stage_check, which reserves nothing)."""
from decimal import Decimal

import pytest

from jobs.kinds import JobParamsError
from jobs.models import Job
from ksg_web.runs.pipeline import run_stage_params
from privacy.models import LedgerEntry, PrivateDataset
from privacy.selectors import dataset_balance
from privacy.services import (BudgetExceeded, NonPrivateRefused, budget_reserve, dp_finetune_submit,
                              finetune_private_submit, run_first_stage_check)
from ksg_web.runs.presets import preset_stages
from tests.privacy.factories import make_dataset, make_dp_job

pytestmark = pytest.mark.django_db


@pytest.fixture()
def owner(make_user):
    return make_user("olive")


@pytest.fixture()
def clinic(owner):
    """Limit 10, of which 7 are reserved by a running job: 3 left."""
    dataset = make_dataset(owner, name="clinic", epsilon_limit="10")
    budget_reserve(job=make_dp_job(owner, dataset), epsilon=7, actor=owner)
    return PrivateDataset.objects.get(pk=dataset.pk)  # as a form or the API loads it


def stage1_params(target_epsilon, **overrides) -> dict:
    overrides = [f"dp_finetune.{name}={value}" for name, value in overrides.items()]
    return run_stage_params(preset_stages("demo", target_epsilon=target_epsilon, overrides=overrides),
                            "dp_direct")["dp_finetune"]


def refusal_on_both_paths(error, *, owner, dataset, stage: str, params: dict) -> tuple[str, str]:
    """(message of the run's check, message of the stage's submission); neither leaves a trace."""
    rows = (Job.objects.count(), LedgerEntry.objects.count())
    with pytest.raises(error) as by_check:
        run_first_stage_check(dataset=dataset, stage=stage, params=params)
    submit = dp_finetune_submit if stage == "dp_finetune" else finetune_private_submit
    with pytest.raises(error) as by_submit:
        submit(owner=owner, dataset=dataset, params=params)
    assert (Job.objects.count(), LedgerEntry.objects.count()) == rows
    return str(by_check.value), str(by_submit.value)


def test_an_epsilon_over_the_budget_is_refused_alike_by_the_run_check_and_the_submission(owner, clinic):
    by_check, by_submit = refusal_on_both_paths(BudgetExceeded, owner=owner, dataset=clinic, stage="dp_finetune",
                                                params=stage1_params(4))

    numbers = ("asks for epsilon 4.000000 on dataset 'clinic', whose limit is 10.000000; 0 is spent and "
               "7.000000 reserved by running jobs, so at most 3.000000 is left. Ask for 3.000000 or less, or ")
    assert by_check == f"Refused: the run {numbers}have the limit raised."
    # the refused job was rolled back with its reservation; its id is the next one
    assert by_submit.startswith("Refused: job ")
    assert by_submit.split(" ", 3)[3] == f"{numbers}have a compliance officer raise the limit."


def test_an_epsilon_that_exactly_fills_what_is_left_fits_on_both_paths(owner, clinic):
    run_first_stage_check(dataset=clinic, stage="dp_finetune", params=stage1_params(3))
    job = dp_finetune_submit(owner=owner, dataset=clinic, params=stage1_params(3))

    assert LedgerEntry.objects.get(job=job).epsilon == Decimal("3")
    assert dataset_balance(dataset=clinic).left == 0


def test_an_epsilon_one_ledger_quantum_over_what_is_left_is_refused_on_both_paths(owner, clinic):
    by_check, by_submit = refusal_on_both_paths(BudgetExceeded, owner=owner, dataset=clinic, stage="dp_finetune",
                                                params=stage1_params(3.000001))
    assert "asks for epsilon 3.000001" in by_check and "asks for epsilon 3.000001" in by_submit


def test_stage1_parameters_that_cannot_run_are_refused_with_one_message_on_both_paths(owner, clinic):
    by_check, by_submit = refusal_on_both_paths(JobParamsError, owner=owner, dataset=clinic, stage="dp_finetune",
                                                params=stage1_params(1, logical_batch_size=5000))
    assert by_check == by_submit == (
        "dp_finetune: the training split has 900 records, fewer than logical_batch_size 5000; "
        "lower the batch size or add records")


def test_a_nonprivate_baseline_is_refused_on_both_paths_the_submission_saying_how_to_allow_it(owner, clinic):
    params = run_stage_params(preset_stages("demo", target_epsilon=None), "nonprivate")["finetune_private"]
    by_check, by_submit = refusal_on_both_paths(NonPrivateRefused, owner=owner, dataset=clinic,
                                                stage="finetune_private", params=params)

    refusal = ("Refused: dataset 'clinic' does not allow non-private baselines (a model trained on its raw records "
               "with no privacy guarantee).")
    assert by_check == refusal
    assert by_submit == refusal + (" Its owner can allow them at registration (ksg_dataset_add "
                                   "--allow-nonprivate-baselines) if a leaky upper bound is wanted for comparison.")


def test_the_approvals_page_flags_a_waiting_run_by_the_same_fit_rule(make_user, owner):
    from django.test import Client
    from django.urls import reverse

    from ksg_web.runs.pipeline import run_submit
    from privacy.services import approval_threshold_change

    dataset = approval_threshold_change(dataset=make_dataset(owner, name="ward", epsilon_limit="10"), threshold="2",
                                        actor=owner, comment="above 2 needs a second look")
    exact, over = (run_submit(owner=owner, dataset=dataset, stages=preset_stages("demo", target_epsilon=epsilon),
                              preset="demo", baseline="dp_direct") for epsilon in (3, 4))
    budget_reserve(job=make_dp_job(owner, dataset), epsilon=7, actor=owner)  # 3 left now

    officer = Client()
    officer.force_login(make_user("cleo", role="compliance_officer"))
    page = officer.get(reverse("compliance:approvals")).content.decode()
    card = {run.pk: page.split(f'id="approval-{run.pk}"')[1].split("</section>")[0] for run in (exact, over)}
    assert "does not fit now" not in card[exact.pk]
    assert "does not fit now" in card[over.pk]


def test_under_tight_composition_both_paths_admit_by_the_composed_plan(owner):
    from jobs.kinds import params_parse
    from privacy.dp.composition import epsilon_composed
    from privacy.models import PrivacyBudget
    from privacy.selectors import epsilon_ceiling
    from privacy.services import dp_finetune_plan

    dataset = make_dataset(owner, name="wards", epsilon_limit="100")
    PrivacyBudget.objects.filter(dataset=dataset).update(composition="tight")
    dataset = PrivateDataset.objects.get(pk=dataset.pk)
    params = stage1_params(4.0)
    plan = dp_finetune_plan(dataset=dataset, parsed=params_parse("dp_finetune", params))
    two = epsilon_ceiling(epsilon_composed(mechanisms=[plan, plan], delta=dataset.budget.delta))
    assert two < Decimal("7.9")  # the sum of two targets of 4 would not fit the limit below
    PrivacyBudget.objects.filter(dataset=dataset).update(epsilon_limit=two)
    dataset = PrivateDataset.objects.get(pk=dataset.pk)

    for _ in range(2):
        run_first_stage_check(dataset=dataset, stage="dp_finetune", params=params)
        job = dp_finetune_submit(owner=owner, dataset=dataset, params=params)
        assert LedgerEntry.objects.get(job=job, kind="reserve").mechanism["plan"] == plan.as_record()
    assert dataset_balance(dataset=dataset).spent + dataset_balance(dataset=dataset).reserved == two

    by_check, by_submit = refusal_on_both_paths(BudgetExceeded, owner=owner, dataset=dataset, stage="dp_finetune",
                                                params=stage1_params(0.5))
    for message in (by_check, by_submit):
        assert "under tight composition (prv, delta 0.0001)" in message and f"composes to {two}" in message
