"""Submitting DP jobs: the job and its epsilon reservation are one transaction, so a job that
does not fit the budget is refused before it exists, and an accepted one is queued only once
its epsilon is set aside."""
from django.db import transaction

from jobs.kinds import JobParamsError, params_parse
from privacy.kinds import DPFinetuneParams
from jobs.services import job_submit

from privacy.dp.accountant import AccountingError, noise_calibrate
from privacy.dp.composition import Mechanism
from privacy.dp.config import TrainConfigError, dp_config_from_params, planned_steps, units_plan
from ..models import PrivacyBudget, PrivateDataset
from .budget import budget_nonprivate_release, budget_reserve


def dp_finetune_params_check(*, dataset: PrivateDataset, params: dict | None) -> DPFinetuneParams:
    """Stage 1's parameters, parsed and checked against `dataset` (its budget's delta and
    accountant, its training split's size) without creating anything. Raises JobParamsError for
    parameters that cannot run, including a training split smaller than the batch. The one home
    of this rule: dp_finetune_submit and a run's check before approval both call it."""
    parsed = params_parse("dp_finetune", params)
    budget = dataset.budget
    try:
        config = dp_config_from_params(parsed, delta=budget.delta, accountant=budget.accountant)
        if dataset.privacy_unit:  # DP-SGD samples persons
            units_plan(config, dataset.train_units)
        else:
            planned_steps(config, dataset.train_count)
    except TrainConfigError as exc:
        raise JobParamsError(f"dp_finetune: {exc}") from None
    return parsed


def dp_finetune_plan(*, dataset: PrivateDataset, parsed: DPFinetuneParams) -> Mechanism | None:
    """The mechanism stage 1 will run on `dataset`, as the training loop plans it: the Poisson
    rate and steps (of persons where the dataset names its unit) and the noise calibrated to the
    target epsilon by the budget's accountant. Only a tight budget needs it (to compose the plan
    with the history before admitting the job): None under sequential, where calibrating would
    only cost time. Raises JobParamsError when no noise meets the target."""
    budget = dataset.budget
    if budget.composition != PrivacyBudget.Composition.TIGHT:
        return None
    config = dp_config_from_params(parsed, delta=budget.delta, accountant=budget.accountant)
    n_units = dataset.train_units if dataset.privacy_unit else dataset.train_count
    steps, sample_rate = (units_plan if dataset.privacy_unit else planned_steps)(config, n_units)
    try:
        calibration = noise_calibrate(sample_rate=sample_rate, steps=steps, delta=budget.delta,
                                      target_epsilon=parsed.target_epsilon, accountant=budget.accountant)
    except AccountingError as exc:
        raise JobParamsError(f"dp_finetune: {exc}") from None
    return Mechanism(sample_rate, calibration.noise_multiplier, steps)


@transaction.atomic
def dp_finetune_submit(*, owner, dataset: PrivateDataset, params: dict | None = None, parent=None):
    """Queue a stage-1 job on `dataset`, reserving its target epsilon.

    Raises JobParamsError for parameters that cannot run (including a training split smaller
    than the batch), BudgetExceeded when the target epsilon does not fit what is left.
    """
    parsed = dp_finetune_params_check(dataset=dataset, params=params)
    plan = dp_finetune_plan(dataset=dataset, parsed=parsed)
    job = job_submit(owner=owner, kind="dp_finetune", params=params, dataset=dataset, parent=parent)
    budget_reserve(job=job, epsilon=parsed.target_epsilon, actor=owner, plan=plan)
    return job


@transaction.atomic
def finetune_private_submit(*, owner, dataset: PrivateDataset, params: dict | None = None, parent=None):
    """Queue the `nonprivate` baseline's training on `dataset`, recording the non-private release
    in the ledger in the same transaction. Raises NonPrivateRefused when the dataset does not
    allow non-private baselines (then nothing is created)."""
    params_parse("finetune_private", params)
    job = job_submit(owner=owner, kind="finetune_private", params=params, dataset=dataset, parent=parent)
    budget_nonprivate_release(job=job, actor=owner)
    return job
