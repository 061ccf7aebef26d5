"""The registry of job kinds: each app registers its kinds (jobs.registry, from its AppConfig.ready), one
JobKindSpec per kind, and the engine reads everything about a kind from it: its queue, its
parameters, its stage function, its time limit, what to settle when its worker is lost, the
service that submits it and the artifacts it reads and writes. A new kind needs its spec and its
stage function; no migration (Job.kind is checked against this registry, not a choices list).

Parameters are frozen dataclasses validated once, here at the edge; the stage code trusts them.
Each field may carry bounds in its metadata: `field(default=..., metadata={"min": 1, "max": 10})`.
Functions are named by dotted path and imported when first called: a stage pulls in torch, which
the web process and the registry never need.
"""
import dataclasses
import math
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, Callable

from .ids import DB_INT_MAX

CLIENT_QUEUE = "client"  # may read private data
SERVER_QUEUE = "server"  # never receives a private dataset, only artifact ids


class JobParamsError(ValueError):
    """Parameters a user gave that cannot run; the message says what to fix."""


class JobKindError(LookupError):
    """A kind registered twice with different specs, or with settings that cannot work."""


@dataclass(frozen=True)
class ArtifactInput:
    """An artifact a stage reads: the parameter carrying its id, the artifact kind, and the file
    name an earlier stage of the same run recorded it under ("": any). Inside a run the
    orchestration fills the parameter from the newest earlier stage that recorded a match."""

    param: str
    kind: str
    name: str = ""
    required: bool = True


@dataclass(frozen=True)
class ArtifactOutput:
    """An artifact a stage records: its kind and file name."""

    kind: str
    name: str


@dataclass(frozen=True)
class JobKindSpec:
    """Everything the engine knows about one kind of job.

    A kind with a `stage` is executed by a worker on `queue` (a Celery task named `jobs.<kind>`),
    heartbeats while it runs, and is stopped after `time_limit` seconds. A kind without one is
    composite (a run): its children are the executed jobs, and `child_finished` advances it."""

    kind: str
    label: str
    queue: str | None = None
    params_class: type | None = None
    stage: str = ""                # dotted path: stage(params, ctx) -> None
    time_limit: int = 0            # seconds; KSG_STAGE_TIME_LIMITS may override it per kind
    settle_lost: str = ""          # dotted path: settle_lost(job=) under the job's row lock, when its worker is lost
    submit: str = ""               # dotted path of the service that submits it, when it writes more than a job (the ledger)
    child_finished: str = ""       # dotted path: child_finished(child_id=), for composite kinds
    inputs: tuple[ArtifactInput, ...] = ()
    outputs: tuple[ArtifactOutput, ...] = ()
    # Kinds that write the privacy ledger (a DP reservation, or a non-private release) are
    # submitted through their own service (`submit`), which writes it in the same transaction,
    # never through the generic job form.
    spends_budget: bool = False

    @property
    def executed(self) -> bool:
        return bool(self.stage)

    def function(self, role: str) -> Callable | None:
        """The function named by `stage`, `settle_lost`, `submit` or `child_finished`, imported now."""
        path = getattr(self, role)
        if not path:
            return None
        module_name, function_name = path.rsplit(".", 1)
        return getattr(import_module(module_name), function_name)


_KINDS: dict[str, JobKindSpec] = {}


def job_kinds_add(*specs: JobKindSpec) -> None:
    """Add kinds to the registry (jobs.registry.job_kinds_register, from an AppConfig.ready). Registering the same spec again is a
    no-op; another spec under a registered name is refused."""
    for spec in specs:
        if spec.executed and (spec.queue not in (CLIENT_QUEUE, SERVER_QUEUE) or spec.params_class is None
                              or spec.time_limit <= 0):
            raise JobKindError(f"job kind {spec.kind!r} has a stage but no queue, parameters or time limit")
        if spec.kind in _KINDS and _KINDS[spec.kind] != spec:
            raise JobKindError(f"job kind {spec.kind!r} is already registered with another spec")
        _KINDS[spec.kind] = spec


def job_kinds() -> dict[str, JobKindSpec]:
    """Every registered kind, by name."""
    return dict(_KINDS)


def job_kinds_executed() -> list[str]:
    """The kinds a worker executes (each a Celery task with a heartbeat)."""
    return [kind for kind, spec in _KINDS.items() if spec.executed]


def job_kind_spec(kind: str) -> JobKindSpec:
    try:
        return _KINDS[kind]
    except KeyError:
        raise JobParamsError(f"unknown job kind {kind!r}; known kinds: {', '.join(sorted(_KINDS))}") from None


def job_kind_label(kind: str) -> str:
    """The kind's name for people ("DP fine-tuning (stage 1)"); an unregistered kind as it is."""
    spec = _KINDS.get(kind)
    return spec.label if spec else kind


def seed_field(help_text: str = "Seed for sampling and noise."):
    """A parameter field holding a seed (shared by the kinds that sample)."""
    return field(default=0, metadata={"min": 0, "max": 2**31 - 1, "help": help_text})


def params_parse(kind: str, raw: dict[str, Any] | None) -> Any:
    """Validate raw parameters (from a form or JSON) into the kind's frozen dataclass."""
    params_class = job_kind_spec(kind).params_class
    if params_class is None:
        raise JobParamsError(f"a {kind} job is not submitted with parameters of its own")
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
