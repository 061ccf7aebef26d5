"""The kinds of job the platform runs: which queue, which Celery task, which parameters.

Parameters are frozen dataclasses validated once, here at the edge; the stage code trusts them.
Each field may carry bounds in its metadata: `field(default=..., metadata={"min": 1, "max": 10})`.
"""
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

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
    lora_rank: int = field(default=8, metadata={"min": 1, "max": 256, "help": "LoRA rank r."})
    lora_alpha: int = field(default=16, metadata={"min": 1, "max": 1024, "help": "LoRA scaling alpha."})
    target_modules: str = field(
        default="q_proj,v_proj", metadata={"help": "Comma-separated module names that get LoRA adapters."}
    )
    learning_rate: float = field(default=2e-3, metadata={"min": 1e-6, "max": 0.5, "help": "AdamW learning rate."})
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
    seed: int = field(default=0, metadata={"min": 0, "max": 2**31 - 1, "help": "Seed for sampling and noise."})


@dataclass(frozen=True)
class JobKindSpec:
    kind: str
    queue: str
    task_name: str
    params_class: type
    # Kinds that spend a privacy budget are submitted through their own service (it reserves
    # epsilon in the same transaction), never through the generic job form.
    spends_budget: bool = False


JOB_KINDS: dict[str, JobKindSpec] = {
    "selftest": JobKindSpec("selftest", SERVER_QUEUE, "jobs.selftest", SelftestParams),
    "dp_finetune": JobKindSpec("dp_finetune", CLIENT_QUEUE, "jobs.dp_finetune", DPFinetuneParams, spends_budget=True),
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
    values = {name: _field_value(kind, fields[name], value) for name, value in raw.items()}
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
    lower, upper = spec.metadata.get("min"), spec.metadata.get("max")
    if lower is not None and value < lower:
        raise JobParamsError(f"{kind}.{name} must be at least {lower}, got {value!r}")
    if upper is not None and value > upper:
        raise JobParamsError(f"{kind}.{name} must be at most {upper}, got {value!r}")
    return value
