"""The `finetune_private` stage (client side): plain LoRA of the base model on the private
training records, with no DP at all, for two baselines: `nonprivate` (the raw records: the leaky
upper bound the evaluation compares KnowledgeSG against) and `scrubbed` (every PII span the
detector finds replaced by its kind first: what "just scrub the names out" buys). Its ledger
entry (`nonprivate`, written when it was submitted) says so, and it runs only on datasets that
allow non-private baselines. Its adapter is a client-only artifact (jobs.artifacts): the server
side never reads it, and it cannot be exported."""
from django.conf import settings

from synthesis.lm.loader import training_model_load

from privacy.dp.train import plain_lora_train
from .models import LedgerEntry
from .pii import KINDS as PII_KINDS, pii_find, pii_redact
from .selectors import dataset_records


def finetune_private_run(params, ctx) -> None:
    job = ctx.job
    if job.artifacts.filter(kind="adapter").exists():
        return  # idempotent on redelivery
    if not LedgerEntry.objects.filter(job=job, kind=LedgerEntry.Kind.NONPRIVATE).exists():
        raise PermissionError(f"job {job.pk} has no non-private release in the ledger; submit it through the run")
    records = dataset_records(dataset=job.dataset, split="train")
    if params.records == "scrubbed":
        records, masked = records_scrub(records)
        ctx.metric(step=0, scrubbed_spans=sum(masked.values()), **{f"scrubbed_{kind}": n for kind, n in masked.items()})
        ctx.log(f"scrubbed {sum(masked.values())} PII spans from {len(records)} records before training", **masked)
    model, tokenizer = training_model_load(params.base_model, cache_dir=settings.KSG_MODEL_CACHE)
    model, result = plain_lora_train(model, tokenizer, records, params, on_step=lambda report: ctx.check(),
                                     on_step_done=lambda report: ctx.metric(**report.training_metric()))
    # Fit to the records without DP, it may reproduce them: it stays on the private volume (the
    # client-only artifact area), out of the server side's reach; evaluate and serving read it there.
    ctx.client_artifact_dir.mkdir(parents=True, exist_ok=True)
    adapter_dir = ctx.client_artifact_dir / "private_adapter"
    model.save_pretrained(adapter_dir)
    tokenizer.save_pretrained(adapter_dir)
    ctx.artifact(kind="adapter", path=adapter_dir)
    ctx.log(f"non-private adapter trained on {len(records)} {params.records} private records in {result.steps} "
            "steps (no DP)")


def records_scrub(records: list[dict]) -> tuple[list[dict], dict[str, int]]:
    """The records with every PII span pii_find finds replaced by its kind ("[NAME]", ...), in
    both fields, and how many spans of each kind were masked."""
    masked = dict.fromkeys(PII_KINDS, 0)
    scrubbed = []
    for record in records:
        row = dict(record)
        for field_name in ("instruction", "response"):
            spans = pii_find(record[field_name])
            for span in spans:
                masked[span.kind] += 1
            row[field_name] = pii_redact(record[field_name], spans=spans)
        scrubbed.append(row)
    return scrubbed, masked
