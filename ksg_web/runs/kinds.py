"""The run orchestration's job kinds: the run itself (composite: its children are its stages)
and the export of a finished run's model."""
from dataclasses import dataclass, field

from jobs.kinds import SERVER_QUEUE, JobKindSpec

RUN = "run"
EXPORT = "export"


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


KINDS = (
    JobKindSpec(RUN, "KnowledgeSG run", child_finished="ksg_web.runs.pipeline.run_child_finished"),
    JobKindSpec(EXPORT, "Model export", SERVER_QUEUE, ExportParams,
                stage="ksg_web.runs.export.model_export_run", time_limit=2 * 3600),
)
