"""The server-side stages 2-5 of KnowledgeSG. Each takes artifact ids (never private data),
writes its output under its job's artifact directory, and is idempotent: a stage whose job
already recorded its output artifact returns without redoing the work."""
import json
from pathlib import Path

from django.conf import settings

from jobs.selectors import artifact_input
from privacy.pii import pii_detector_description, pii_find

from .kinds import KEPT_FILE, PAIRS_FILE, RAW_FILE, SYNTHETIC_FILE
from .filtering import FilterConfig, filter_instructions, verdict_counts
from synthesis.lm.backends import backend_load
from synthesis.lm.generation import SamplingParams
from .prompts import (distill_prompts, generation_prompts, instruction_extract, user_turn_instruction,
                      user_turn_prompts)
from privacy.dp.train import plain_lora_train
from synthesis.lm.loader import training_model_load

RESPONSE_PII_KINDS = ("name", "email", "phone", "id")
VERDICTS_FILE = "verdicts.jsonl"


def generate_run(params, ctx) -> None:
    """Stage 2: sample raw instructions from W_Loc + the DP adapter, prompted with public seeds
    (prompting few_shot) or by opening the user's turn for the adapter to write (user_turn).
    adapter_artifact 0 samples from W_Loc alone (the `self_instruct` baseline)."""
    if _already_done(ctx, "synthetic_data", RAW_FILE):
        return
    adapter = artifact_input(artifact_id=params.adapter_artifact, kind="adapter") if params.adapter_artifact else None
    if params.prompting == "user_turn":
        prompts, extract = user_turn_prompts(params.num_instructions), user_turn_instruction
    else:
        prompts = generation_prompts(domain=params.domain, count=params.num_instructions, few_shot=params.few_shot,
                                     seed=params.seed)
        extract = instruction_extract
    sampling = SamplingParams(temperature=params.temperature, top_p=params.top_p,
                              max_new_tokens=params.max_new_tokens, seed=params.seed)
    backend = backend_load(backend=params.backend, model_spec=params.base_model, adapter_path=adapter,
                           cache_dir=settings.KSG_MODEL_CACHE)
    done = 0

    def on_completion(index, completion):
        nonlocal done
        done += 1
        ctx.check()
        ctx.sample(stage="generate", index=index, instruction=extract(completion.text))
        if done % 10 == 0 or done == len(prompts):
            ctx.metric(step=done, generated=done, completion_tokens=completion.completion_tokens)

    try:
        completions = backend.generate(prompts, sampling, on_completion=on_completion)
    finally:
        backend.close()
    rows = [{"index": i, "instruction": extract(c.text), "generated": c.text,
             "completion_tokens": c.completion_tokens, "finish_reason": c.finish_reason}
            for i, c in enumerate(completions)]
    _write_output(ctx, RAW_FILE, rows)
    ctx.log(f"generated {len(rows)} raw instructions", tokens=sum(c.completion_tokens for c in completions))


def filter_run(params, ctx) -> None:
    """Stage 3: drop malformed items, PII, near-duplicates, and what W_Pro judges off-domain."""
    if _already_done(ctx, "synthetic_data", KEPT_FILE):
        return
    raw = _read_jsonl(artifact_input(artifact_id=params.raw_artifact, kind="synthetic_data"))
    instructions = [row["instruction"] for row in raw]
    config = FilterConfig(dedup_threshold=params.dedup_threshold, relevance_threshold=params.relevance_threshold,
                          pii_action=params.pii_action)
    judge = backend_load(backend=params.backend, model_spec=params.professional_model, adapter_path=None,
                         cache_dir=settings.KSG_MODEL_CACHE)

    def on_verdict(verdict):
        ctx.sample(stage="filter", index=verdict.index, instruction=verdict.text, kept=verdict.kept,
                   reason=verdict.reason)

    try:
        ctx.check()
        verdicts = filter_instructions(instructions, config=config, domain=params.domain,
                                       next_token_probs=judge.next_token_probs, on_verdict=on_verdict)
    finally:
        judge.close()
    counts = verdict_counts(verdicts)
    ctx.metric(step=1, **counts, pii_detector=pii_detector_description()["text"])  # the report names the detector
    _write_output(ctx, VERDICTS_FILE, [
        {"index": v.index, "instruction": v.text, "kept": v.kept, "reason": v.reason, "detail": v.detail}
        for v in verdicts
    ], kind="report")
    _write_output(ctx, KEPT_FILE, [{"instruction": v.text} for v in verdicts if v.kept])
    ctx.log(f"kept {counts['kept']} of {len(verdicts)} instructions", **counts)


def distill_run(params, ctx) -> None:
    """Stage 4: W_Pro writes the response to each kept instruction (knowledge distillation)."""
    if _already_done(ctx, "synthetic_data", PAIRS_FILE):
        return
    kept = [row["instruction"] for row in _read_jsonl(artifact_input(artifact_id=params.kept_artifact,
                                                                     kind="synthetic_data"))]
    if not kept:
        raise ValueError("the filter kept no instructions; there is nothing to distill (loosen the filter or "
                         "generate more)")
    sampling = SamplingParams(temperature=params.temperature, top_p=params.top_p,
                              max_new_tokens=params.max_new_tokens, seed=params.seed)
    professional = backend_load(backend=params.backend, model_spec=params.professional_model, adapter_path=None,
                                cache_dir=settings.KSG_MODEL_CACHE)

    def on_completion(index, completion):
        ctx.check()
        ctx.sample(stage="distill", index=index, instruction=kept[index], response=completion.text)

    try:
        completions = professional.generate(distill_prompts(kept, domain=params.domain), sampling,
                                            on_completion=on_completion)
    finally:
        professional.close()
    # W_Pro never saw the private data, but it invents people ("I am Dr. Patel"): a target model
    # must not learn to emit names or contact details, so such responses are dropped too.
    pairs, dropped = [], {"empty": 0, "pii": 0}
    for text, completion in zip(kept, completions):
        response = completion.text.strip()
        if not response:
            dropped["empty"] += 1
        elif any(span.kind in RESPONSE_PII_KINDS for span in pii_find(response)):
            dropped["pii"] += 1
        else:
            pairs.append({"instruction": text, "response": response})
    _write_output(ctx, PAIRS_FILE, pairs)
    ctx.metric(step=1, pairs=len(pairs), dropped_empty=dropped["empty"], dropped_pii=dropped["pii"])
    ctx.log(f"distilled {len(pairs)} instruction-response pairs", **{f"dropped_{k}": v for k, v in dropped.items()})


def finetune_target_run(params, ctx) -> None:
    """Stage 5: plain LoRA fine-tuning of W_Loc on the synthetic pairs, with the stage-1 code
    (DP off: these pairs never saw the private data). Outputs the target adapter and, beside it,
    the synthetic dataset it was trained on."""
    if ctx.job.artifacts.filter(kind="adapter").exists():
        return
    pairs_path = artifact_input(artifact_id=params.synthetic_artifact, kind="synthetic_data")
    pairs = _read_jsonl(pairs_path)
    if not pairs:
        raise ValueError("there are no synthetic pairs to train on (every response was empty or held PII)")
    model, tokenizer = training_model_load(params.base_model, cache_dir=settings.KSG_MODEL_CACHE)
    model, result = plain_lora_train(model, tokenizer, pairs, params, on_step=lambda report: ctx.check(),
                                     on_step_done=lambda report: ctx.metric(**report.training_metric()))
    ctx.artifact_dir.mkdir(parents=True, exist_ok=True)
    synthetic_copy = ctx.artifact_dir / SYNTHETIC_FILE
    synthetic_copy.write_bytes(pairs_path.read_bytes())
    ctx.artifact(kind="synthetic_data", path=synthetic_copy)
    adapter_dir = ctx.artifact_dir / "target_adapter"
    model.save_pretrained(adapter_dir)
    tokenizer.save_pretrained(adapter_dir)
    ctx.artifact(kind="adapter", path=adapter_dir)
    ctx.log(f"target adapter trained on {len(pairs)} synthetic pairs in {result.steps} steps")


def _already_done(ctx, kind: str, filename: str) -> bool:
    return ctx.job.artifacts.filter(kind=kind, path__endswith=filename).exists()


def _write_output(ctx, filename: str, rows: list[dict], *, kind: str = "synthetic_data") -> Path:
    ctx.artifact_dir.mkdir(parents=True, exist_ok=True)
    path = ctx.artifact_dir / filename
    staging = path.with_suffix(".partial")
    with staging.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    staging.replace(path)  # a re-run never sees half a file
    ctx.artifact(kind=kind, path=path)
    return path


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
