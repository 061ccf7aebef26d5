"""The `finetune_private` stage (client side): the `nonprivate` baseline, plain LoRA of the base
model on the raw private training records, with no DP at all. It is the leaky upper bound the
evaluation compares KnowledgeSG against; its ledger entry (`nonprivate`, written when it was
submitted) says so, and it runs only on datasets that allow non-private baselines."""
from django.conf import settings

from synthesis.loader import causal_lm_load
from synthesis.stages import training_metric

from .dp_train import plain_lora_train
from .models import LedgerEntry
from .selectors import dataset_records


def finetune_private_run(params, ctx) -> None:
    job = ctx.job
    if job.artifacts.filter(kind="adapter").exists():
        return  # idempotent on redelivery
    if not LedgerEntry.objects.filter(job=job, kind=LedgerEntry.Kind.NONPRIVATE).exists():
        raise PermissionError(f"job {job.pk} has no non-private release in the ledger; submit it through the run")
    records = dataset_records(dataset=job.dataset, split="train")
    model, tokenizer = causal_lm_load(params.base_model, cache_dir=settings.KSG_MODEL_CACHE)
    model, result = plain_lora_train(model, tokenizer, records, params, on_step=lambda report: ctx.check(),
                                     on_step_done=lambda report: training_metric(ctx, report))
    ctx.artifact_dir.mkdir(parents=True, exist_ok=True)
    adapter_dir = ctx.artifact_dir / "private_adapter"
    model.save_pretrained(adapter_dir)
    tokenizer.save_pretrained(adapter_dir)
    ctx.artifact(kind="adapter", path=adapter_dir)
    ctx.log(f"non-private adapter trained on {len(records)} private records in {result.steps} steps (no DP)")
