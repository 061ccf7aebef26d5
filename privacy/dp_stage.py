"""The `dp_finetune` stage (client side): the private training split in, a DP LoRA adapter out,
with every epsilon settled in the ledger whatever happens to the run.

Budget flow: the submit service reserved the target epsilon. Here, before each step's noise,
the step's epsilon is recorded as an `epsilon` event; when the stage ends (finished, failed,
cancelled) the epsilon of the steps taken is committed and the rest released. If the worker
died in an earlier attempt, that attempt's last `epsilon` event says how many steps drew noise:
they are committed and the job fails, asking for a new one (the noise cannot be taken back, and
re-training under the same reservation would spend it twice).
"""
import json
from dataclasses import asdict

from django.conf import settings

from jobs.kinds import job_kind_spec
from jobs.selectors import job_last_event_payload
from synthesis.lm.loader import training_model_load

from privacy.dp import accountant as dp_accountant
from privacy.dp.config import DATASET_SIZE_POLICY, DPTrainConfig, dp_config_from_params
from privacy.dp.train import StepReport, dp_lora_train, examples_tokenize, lora_wrap
from .models import LedgerEntry
from .selectors import dataset_records
from .services import budget_release, budget_settle


class WorkerLostError(Exception):
    """An earlier attempt drew noise and then its worker stopped; its spend is now committed."""


def dp_finetune_run(params, ctx) -> None:
    job = ctx.job
    dataset = job.dataset
    budget = dataset.budget
    config = dp_config_from_params(params, delta=budget.delta, accountant=budget.accountant)
    if LedgerEntry.objects.filter(job=job, kind=LedgerEntry.Kind.COMMIT).exists():
        raise WorkerLostError("this job's epsilon was already committed by an earlier attempt; submit a new job")
    earlier = job_last_event_payload(job_id=job.pk, kind="epsilon")
    if earlier is not None:
        _settle(job, config, earlier)
        raise WorkerLostError(
            f"the worker stopped during step {earlier['step']} of {earlier['planned_steps']} (attempt "
            f"{ctx.attempt - 1}); epsilon {earlier['epsilon']:.6f} of the steps that drew noise is committed. "
            f"Submit a new job to train again."
        )

    model, tokenizer = training_model_load(params.base_model, cache_dir=settings.KSG_MODEL_CACHE)
    model = lora_wrap(model, config)
    records = dataset_records(dataset=dataset, split="train")
    examples = examples_tokenize(records, tokenizer, max_length=config.max_length,
                                whole_record=params.loss_on == "record")
    # With a privacy unit, DP-SGD samples and clips persons (each canary is one); else records.
    units = [record["unit"] for record in records] if dataset.privacy_unit else None
    people = f" ({len(set(units))} {dataset.privacy_unit} units)" if units else ""
    loss = "every token of the record" if params.loss_on == "record" else "the response tokens"
    ctx.log(f"training on {len(examples)} records{people} of {dataset.name}, the loss on {loss}; epsilon is "
            f"{dataset.epsilon_unit}", base_model=params.base_model, loss_on=params.loss_on)
    last_step: dict = {}

    def before_noise(report: StepReport) -> None:
        ctx.check()  # a cancel stops here, before this step's noise is drawn
        payload = {
            "step": report.step, "planned_steps": report.planned_steps, "epsilon": report.epsilon,
            "noise_multiplier": report.noise_multiplier, "sample_rate": report.sample_rate,
            "target_epsilon": config.target_epsilon, "delta": config.delta, "accountant": config.accountant,
            "epsilon_unit": dataset.epsilon_unit,
        }
        ctx.epsilon(**payload)
        last_step.clear()
        last_step.update(payload)
        # The reaper commits the steps the `epsilon` events name; a job it failed after this
        # event was written counted this step, one failed before stops here, noise not drawn.
        ctx.ensure_running()

    def after_step(report: StepReport) -> None:
        ctx.metric(step=report.step, loss=report.loss, batch_size=report.batch_size, seconds=report.seconds)

    try:
        result = dp_lora_train(model, examples, config, pad_id=tokenizer.pad_token_id, units=units,
                               on_step=before_noise, on_step_done=after_step)
    finally:
        _settle(job, config, last_step or None)

    adapter_dir = ctx.artifact_dir / "adapter"
    model.save_pretrained(adapter_dir)
    tokenizer.save_pretrained(adapter_dir)
    committed = LedgerEntry.objects.get(job=job, kind=LedgerEntry.Kind.COMMIT)
    (adapter_dir / "privacy.json").write_text(json.dumps({
        "epsilon": float(committed.epsilon), "delta": config.delta, "accountant": config.accountant,
        "epsilon_unit": dataset.epsilon_unit, "privacy_unit": dataset.privacy_unit or "record",
        "eps_error": dp_accountant.PRV_EPS_ERROR if config.accountant == "prv" else None,
        "target_epsilon": config.target_epsilon, "sample_rate": result.sample_rate,
        "noise_multiplier": result.noise_multiplier, "steps": result.steps, "planned_steps": result.planned_steps,
        "max_grad_norm": config.max_grad_norm, "logical_batch_size": config.logical_batch_size,
        "secure_rng": result.secure_rng,
        "base_model": params.base_model, "config": asdict(config),
        "dataset": {"name": dataset.name, "sha256": dataset.sha256, "train_records": dataset.train_count,
                    "train_units": dataset.train_units, "size": DATASET_SIZE_POLICY},
        "library_versions": dp_accountant.library_versions(),
    }, indent=2))
    ctx.artifact(kind="adapter", path=adapter_dir)
    ctx.log(f"adapter saved: epsilon {committed.epsilon} spent over {result.steps} steps")


def dp_finetune_settle_lost(*, job) -> None:
    """The job's worker vanished (jobs.reaper): commit the epsilon of the steps its `epsilon`
    events say drew noise, release the rest; nothing if an attempt already settled it."""
    if LedgerEntry.objects.filter(job=job, kind__in=[LedgerEntry.Kind.COMMIT, LedgerEntry.Kind.RELEASE]).exists():
        return
    budget = job.dataset.budget
    params = job_kind_spec(job.kind).params_class(**job.params)
    config = dp_config_from_params(params, delta=budget.delta, accountant=budget.accountant)
    _settle(job, config, job_last_event_payload(job_id=job.pk, kind="epsilon"))


def _settle(job, config: DPTrainConfig, last_step: dict | None) -> None:
    """Commit the epsilon of the steps that drew noise (from the accountant), release the rest.
    No step started: nothing was spent, the whole reservation goes back."""
    if last_step is None:
        budget_release(job=job, actor=job.owner, reason="no DP step was taken; nothing spent")
        return
    epsilon = dp_accountant.epsilon_compute(
        sample_rate=last_step["sample_rate"], noise_multiplier=last_step["noise_multiplier"],
        steps=last_step["step"], delta=config.delta, accountant=config.accountant,
    )
    mechanism = {
        "mechanism": "poisson_subsampled_gaussian", "sample_rate": last_step["sample_rate"],
        "noise_multiplier": last_step["noise_multiplier"], "steps": last_step["step"],
        "max_grad_norm": config.max_grad_norm, "accountant": config.accountant,
        # what the sample rate samples and the clipping bounds: a record, or a person's records together
        "unit": job.dataset.privacy_unit or "record", "epsilon_unit": job.dataset.epsilon_unit,
        "max_records_per_unit": config.max_records_per_unit if job.dataset.privacy_unit else 1,
        "library_versions": dp_accountant.library_versions(),
    }
    budget_settle(job=job, epsilon=epsilon, delta=config.delta, mechanism=mechanism, actor=job.owner,
                  reason=f"DP-SGD: {last_step['step']} steps of {job.kind} job {job.pk}")
