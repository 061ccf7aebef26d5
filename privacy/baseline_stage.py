"""The `finetune_private` stage (client side): plain LoRA of the base model on the private
training records, with no DP at all, for two baselines: `nonprivate` (the raw records: the leaky
upper bound the evaluation compares KnowledgeSG against) and `scrubbed` (every PII span the
detector finds replaced by its kind first: what "just scrub the names out" buys). Its ledger
entry (`nonprivate`, written when it was submitted) says so, and it runs only on datasets that
allow non-private baselines. Its adapter is a client-only artifact (jobs.artifacts): the server
side never reads it, and it cannot be exported."""
from django.conf import settings

from synthesis.lm.loader import training_model_load

import math

import torch

from privacy.dp.train import collate, examples_tokenize, per_example_loss, plain_lora_train
from .models import LedgerEntry
from .pii import KINDS as PII_KINDS, pii_find_many, pii_redact
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
    heldout = dataset_records(dataset=job.dataset, split="heldout")
    model, tokenizer = training_model_load(params.base_model, cache_dir=settings.KSG_MODEL_CACHE)
    steps_per_epoch = max(1, math.ceil(len(records) / min(params.logical_batch_size, len(records))))
    trained = {}

    def after_step(report) -> None:
        metric = report.training_metric()
        if heldout and (report.step % steps_per_epoch == 0 or report.step == report.planned_steps):
            # held-out loss beside the training loss once per epoch: over-fitting shows as the two part
            metric["heldout_loss"] = heldout_loss(trained["model"], tokenizer, heldout, max_length=params.max_length,
                                                  whole_record=params.loss_on == "record")
        ctx.metric(**metric)

    model, result = plain_lora_train(model, tokenizer, records, params, on_step=lambda report: ctx.check(),
                                     on_step_done=after_step, on_model=lambda wrapped: trained.setdefault("model", wrapped))
    # Fit to the records without DP, it may reproduce them: it stays on the private volume (the
    # client-only artifact area), out of the server side's reach; evaluate and serving read it there.
    ctx.client_artifact_dir.mkdir(parents=True, exist_ok=True)
    adapter_dir = ctx.client_artifact_dir / "private_adapter"
    model.save_pretrained(adapter_dir)
    tokenizer.save_pretrained(adapter_dir)
    ctx.artifact(kind="adapter", path=adapter_dir)
    ctx.log(f"non-private adapter trained on {len(records)} {params.records} private records in {result.steps} "
            "steps (no DP)")


def heldout_loss(model, tokenizer, records: list[dict], *, max_length: int, whole_record: bool,
                 batch_size: int = 8) -> float:
    """Mean per-record loss (nats per scored token) of `records` under `model`, tokenized as the
    baseline trains (whole_record: every token; else the response), in eval mode, no gradients."""
    examples = examples_tokenize(records, tokenizer, max_length=max_length, whole_record=whole_record)
    pad = collate(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
    was_training, losses = model.training, []
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(examples), batch_size):
                input_ids, attention_mask, labels = pad(examples[start: start + batch_size])
                losses += per_example_loss(model, input_ids, attention_mask, labels).float().tolist()
    finally:
        model.train(was_training)
    return sum(losses) / len(losses)


def records_scrub(records: list[dict]) -> tuple[list[dict], dict[str, int]]:
    """The records with every PII span pii_find finds replaced by its kind ("[NAME]", ...), in
    both fields, and how many spans of each kind were masked."""
    masked = dict.fromkeys(PII_KINDS, 0)
    fields = ("instruction", "response")
    found = iter(pii_find_many(record[field_name] for record in records for field_name in fields))  # batched NER
    scrubbed = []
    for record in records:
        row = dict(record)
        for field_name in fields:
            spans = next(found)
            for span in spans:
                masked[span.kind] += 1
            row[field_name] = pii_redact(record[field_name], spans=spans)
        scrubbed.append(row)
    return scrubbed, masked
