"""The kinds of job the platform runs: which queue, which Celery task, which parameters.

Parameters are frozen dataclasses validated once, here at the edge; the stage code trusts them.
Each field may carry bounds in its metadata: `field(default=..., metadata={"min": 1, "max": 10})`.
"""
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .ids import DB_INT_MAX

CLIENT_QUEUE = "client"  # may read private data
SERVER_QUEUE = "server"  # never receives a private dataset, only artifact ids


class JobParamsError(ValueError):
    """Parameters a user gave that cannot run; the message says what to fix."""


@dataclass(frozen=True)
class SelftestParams:
    """A job that proves the whole path (form, Celery, events, websocket) with no model."""

    steps: int = field(default=30, metadata={"min": 1, "max": 10_000, "help": "Number of steps to run."})
    interval_seconds: float = field(
        default=0.5, metadata={"min": 0.0, "max": 60.0, "help": "Pause between steps, in seconds."}
    )
    fail_at_step: int = field(
        default=0, metadata={"min": 0, "max": 10_000, "help": "Raise an error at this step (0: never)."}
    )


def _lora_rank():
    return field(default=8, metadata={"min": 1, "max": 256, "help": "LoRA rank r."})


def _lora_alpha():
    return field(default=16, metadata={"min": 1, "max": 1024, "help": "LoRA scaling alpha."})


def _target_modules():
    return field(default="q_proj,v_proj", metadata={"help": "Comma-separated module names that get LoRA adapters."})


def _learning_rate():
    return field(default=2e-3, metadata={"min": 1e-6, "max": 0.5, "help": "AdamW learning rate."})


def _seed(help_text: str = "Seed for sampling and noise."):
    return field(default=0, metadata={"min": 0, "max": 2**31 - 1, "help": help_text})


@dataclass(frozen=True)
class DPFinetuneParams:
    """Stage 1: DP-LoRA fine-tuning of the base model on the private training split."""

    target_epsilon: float = field(
        default=4.0, metadata={"min": 0.01, "max": 100.0, "help": "Epsilon this job may spend (reserved before it starts)."}
    )
    base_model: str = field(
        default="smollm2-135m-instruct",
        metadata={"help": "smollm2-135m-instruct (embedded), a local Hugging Face model directory, or a hub id."},
    )
    lora_rank: int = _lora_rank()
    lora_alpha: int = _lora_alpha()
    target_modules: str = _target_modules()
    learning_rate: float = _learning_rate()
    epochs: float = field(
        default=1.0, metadata={"min": 0.01, "max": 100.0, "help": "Passes over the training split (expected)."}
    )
    steps: int = field(
        default=0, metadata={"min": 0, "max": 1_000_000, "help": "Number of DP-SGD steps; 0 means use epochs."}
    )
    logical_batch_size: int = field(
        default=16, metadata={"min": 1, "max": 65_536, "help": "Expected Poisson batch size B (q = B / N)."}
    )
    physical_batch_size: int = field(
        default=8, metadata={"min": 1, "max": 4096, "help": "Examples per forward pass; bounds memory."}
    )
    max_length: int = field(default=64, metadata={"min": 16, "max": 8192, "help": "Tokens per example."})
    max_grad_norm: float = field(
        default=1.0, metadata={"min": 1e-4, "max": 1e4, "help": "Per-example gradient clipping norm C."}
    )
    seed: int = _seed()


def _domain():
    return field(default="medical", metadata={"choices": ("medical", "finance"), "help": "medical or finance."})


def _backend():
    return field(default="auto", metadata={"choices": ("auto", "transformers", "vllm"),
                                           "help": "auto: vLLM where CUDA and vllm exist, else transformers."})


@dataclass(frozen=True)
class GenerateParams:
    """Stage 2 (server): sample raw instructions from W_Loc + the stage-1 DP adapter."""

    adapter_artifact: int = field(default=0, metadata={"min": 0, "help": "Artifact id of the DP adapter (0: the base model alone, the self_instruct baseline)."})
    base_model: str = field(default="smollm2-135m-instruct", metadata={"help": "W_Loc: the model the adapter was trained on."})
    domain: str = _domain()
    num_instructions: int = field(default=60, metadata={"min": 1, "max": 100_000, "help": "Raw instructions to sample."})
    few_shot: int = field(default=3, metadata={"min": 1, "max": 10, "help": "Public seed examples per prompt."})
    temperature: float = field(default=0.9, metadata={"min": 0.0, "max": 2.0, "help": "Sampling temperature."})
    top_p: float = field(default=0.95, metadata={"min": 0.01, "max": 1.0, "help": "Nucleus sampling mass."})
    max_new_tokens: int = field(default=48, metadata={"min": 4, "max": 1024, "help": "Tokens per instruction."})
    seed: int = _seed("Sampling seed.")
    backend: str = _backend()


@dataclass(frozen=True)
class FilterParams:
    """Stage 3 (server): near-duplicates, relevance judged by W_Pro, PII."""

    raw_artifact: int = field(default=0, metadata={"min": 1, "help": "Artifact id of the raw instructions."})
    professional_model: str = field(default="smollm2-135m-instruct", metadata={"help": "W_Pro, the relevance judge."})
    domain: str = _domain()
    dedup_threshold: float = field(default=0.7, metadata={"min": 0.0, "max": 1.0, "help": "ROUGE-L F1 above which an instruction is a near-duplicate."})
    relevance_threshold: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0, "help": "Minimum p(yes) of W_Pro's relevance verdict."})
    backend: str = _backend()


@dataclass(frozen=True)
class DistillParams:
    """Stage 4 (server): W_Pro writes the response to each kept instruction."""

    kept_artifact: int = field(default=0, metadata={"min": 1, "help": "Artifact id of the kept instructions."})
    professional_model: str = field(default="smollm2-135m-instruct", metadata={"help": "W_Pro, who writes the responses."})
    domain: str = _domain()
    temperature: float = field(default=0.3, metadata={"min": 0.0, "max": 2.0, "help": "Sampling temperature (0: greedy)."})
    top_p: float = field(default=0.9, metadata={"min": 0.01, "max": 1.0, "help": "Nucleus sampling mass."})
    max_new_tokens: int = field(default=96, metadata={"min": 4, "max": 4096, "help": "Tokens per response."})
    seed: int = _seed("Sampling seed.")
    backend: str = _backend()


@dataclass(frozen=True)
class FinetuneTargetParams:
    """Stage 5 (server): plain LoRA of W_Loc on the synthetic pairs (they never saw D_pri)."""

    synthetic_artifact: int = field(default=0, metadata={"min": 1, "help": "Artifact id of the synthetic pairs."})
    base_model: str = field(default="smollm2-135m-instruct", metadata={"help": "W_Loc."})
    lora_rank: int = _lora_rank()
    lora_alpha: int = _lora_alpha()
    target_modules: str = _target_modules()
    learning_rate: float = _learning_rate()
    epochs: float = field(default=1.0, metadata={"min": 0.01, "max": 100.0, "help": "Passes over the synthetic pairs."})
    logical_batch_size: int = field(default=8, metadata={"min": 1, "max": 65_536, "help": "Batch size."})
    physical_batch_size: int = field(default=8, metadata={"min": 1, "max": 4096, "help": "Examples per forward pass."})
    max_length: int = field(default=128, metadata={"min": 16, "max": 8192, "help": "Tokens per example."})
    seed: int = _seed("Seed of the batch order.")


@dataclass(frozen=True)
class FinetunePrivateParams:
    """The `nonprivate` baseline (client): plain LoRA of W_Loc on the raw private training records,
    no DP. Needs the dataset's permission; recorded in the ledger as a non-private release."""

    base_model: str = field(default="smollm2-135m-instruct", metadata={"help": "W_Loc."})
    lora_rank: int = _lora_rank()
    lora_alpha: int = _lora_alpha()
    target_modules: str = _target_modules()
    learning_rate: float = _learning_rate()
    epochs: float = field(default=1.0, metadata={"min": 0.01, "max": 100.0, "help": "Passes over the private training records."})
    logical_batch_size: int = field(default=16, metadata={"min": 1, "max": 65_536, "help": "Batch size."})
    physical_batch_size: int = field(default=8, metadata={"min": 1, "max": 4096, "help": "Examples per forward pass."})
    max_length: int = field(default=64, metadata={"min": 16, "max": 8192, "help": "Tokens per example."})
    records: str = field(default="raw", metadata={
        "choices": ("raw", "scrubbed"),
        "help": "raw: the private records as they are (nonprivate); scrubbed: every PII span the detector finds "
                "replaced by its kind, [NAME], [EMAIL], ... (the scrubbed baseline). The run sets it."})
    seed: int = _seed("Seed of the batch order.")


@dataclass(frozen=True)
class EvaluateParams:
    """Evaluation (client): privacy attacks and utility of an adapter against the base model."""

    adapter_artifact: int = field(default=0, metadata={"min": 1, "help": "Artifact id of the adapter to evaluate."})
    synthetic_artifact: int = field(default=0, metadata={"min": 0, "help": "Artifact id of its synthetic data (0: none)."})
    base_model: str = field(default="smollm2-135m-instruct", metadata={"help": "The model the adapter belongs to."})
    professional_model: str = field(default="smollm2-135m-instruct", metadata={"help": "W_Pro, the win-rate judge."})
    max_records: int = field(default=100, metadata={"min": 2, "max": 100_000, "help": "Records per split used."})
    max_length: int = field(default=128, metadata={"min": 16, "max": 8192, "help": "Tokens per scored record."})
    reconstruction_targets: int = field(default=30, metadata={"min": 1, "max": 10_000, "help": "Names to reconstruct."})
    candidate_set_size: int = field(default=100, metadata={"min": 2, "max": 10_000, "help": "Candidate names per target."})
    generation_records: int = field(default=10, metadata={"min": 1, "max": 10_000, "help": "Held-out questions answered."})
    max_new_tokens: int = field(default=64, metadata={"min": 4, "max": 4096, "help": "Tokens per generated answer."})
    canary_references: int = field(default=1000, metadata={"min": 10, "max": 1_000_000, "help": "Random secrets each planted canary is ranked against (exposure resolution: log2 of this, in bits)."})
    seed: int = _seed("Seed of the attacks' sampling and the judge's answer order.")


@dataclass(frozen=True)
class ExportParams:
    """The model a finished run's evaluation measured, merged into its base model (server: it
    reads artifacts and the run's ledger figures, never records)."""

    run_id: int = field(default=0, metadata={"min": 1, "help": "The run whose model is exported."})
    adapter_artifact: int = field(default=0, metadata={"min": 1, "help": "Artifact id of the evaluated adapter."})
    base_model: str = field(default="smollm2-135m-instruct", metadata={"help": "The adapter's base model."})
    quantize: str = field(default="none", metadata={
        "choices": ("none", "gptq"),
        "help": "gptq: also write a 4-bit GPTQ copy (CUDA and the gpu extra; calibrated on public seed text)."})


@dataclass(frozen=True)
class JobKindSpec:
    kind: str
    queue: str
    task_name: str
    params_class: type
    # Kinds that write the privacy ledger (a DP reservation, or a non-private release) are
    # submitted through their own service, which writes it in the same transaction, never
    # through the generic job form.
    spends_budget: bool = False


JOB_KINDS: dict[str, JobKindSpec] = {
    "selftest": JobKindSpec("selftest", SERVER_QUEUE, "jobs.selftest", SelftestParams),
    "dp_finetune": JobKindSpec("dp_finetune", CLIENT_QUEUE, "jobs.dp_finetune", DPFinetuneParams, spends_budget=True),
    "generate": JobKindSpec("generate", SERVER_QUEUE, "jobs.generate", GenerateParams),
    "filter": JobKindSpec("filter", SERVER_QUEUE, "jobs.filter", FilterParams),
    "distill": JobKindSpec("distill", SERVER_QUEUE, "jobs.distill", DistillParams),
    "finetune_target": JobKindSpec("finetune_target", SERVER_QUEUE, "jobs.finetune_target", FinetuneTargetParams),
    "finetune_private": JobKindSpec("finetune_private", CLIENT_QUEUE, "jobs.finetune_private", FinetunePrivateParams,
                                    spends_budget=True),
    "evaluate": JobKindSpec("evaluate", CLIENT_QUEUE, "jobs.evaluate", EvaluateParams),
    "export": JobKindSpec("export", SERVER_QUEUE, "jobs.export", ExportParams),
}


def job_kind_spec(kind: str) -> JobKindSpec:
    try:
        return JOB_KINDS[kind]
    except KeyError:
        raise JobParamsError(f"unknown job kind {kind!r}; known kinds: {', '.join(sorted(JOB_KINDS))}") from None


def params_parse(kind: str, raw: dict[str, Any] | None) -> Any:
    """Validate raw parameters (from a form or JSON) into the kind's frozen dataclass."""
    params_class = job_kind_spec(kind).params_class
    raw = dict(raw or {})
    fields = {f.name: f for f in dataclasses.fields(params_class)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise JobParamsError(
            f"unknown parameter(s) {', '.join(unknown)} for {kind}; allowed: {', '.join(fields)}"
        )
    # Defaults are checked too: a required input (an artifact id defaulting to 0) must be given.
    values = {name: _field_value(kind, spec, raw.get(name, spec.default)) for name, spec in fields.items()}
    return params_class(**values)


def params_as_dict(params: Any) -> dict[str, Any]:
    return dataclasses.asdict(params)


def _field_value(kind: str, spec: dataclasses.Field, value: Any) -> Any:
    name, wanted = spec.name, spec.type
    if wanted in (int, "int"):
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise JobParamsError(f"{kind}.{name} must be a whole number, got {value!r}")
    elif wanted in (float, "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise JobParamsError(f"{kind}.{name} must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise JobParamsError(f"{kind}.{name} must be a finite number, got {value!r}")
    elif wanted in (str, "str"):
        if not isinstance(value, str) or not value.strip() or "\x00" in value or len(value) > 1000:
            raise JobParamsError(f"{kind}.{name} must be non-empty text without NUL bytes, got {value!r}")
        value = value.strip()
    choices = spec.metadata.get("choices")
    if choices is not None and value not in choices:
        raise JobParamsError(f"{kind}.{name} must be one of {', '.join(choices)}, got {value!r}")
    lower, upper = spec.metadata.get("min"), spec.metadata.get("max")
    if upper is None and wanted in (int, "int"):
        upper = DB_INT_MAX  # an id with no bound of its own still has to fit the database
    if lower is not None and value < lower:
        raise JobParamsError(f"{kind}.{name} must be at least {lower}, got {value!r}")
    if upper is not None and value > upper:
        raise JobParamsError(f"{kind}.{name} must be at most {upper}, got {value!r}")
    return value
