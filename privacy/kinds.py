"""The privacy app's job kinds: stage 1 (DP-LoRA on the private records) and the non-private
baselines' fine-tuning, both client side and both written to the ledger when submitted."""
from dataclasses import dataclass, field

from jobs.kinds import CLIENT_QUEUE, ArtifactOutput, JobKindSpec, seed_field


def lora_rank_field():
    return field(default=8, metadata={"min": 1, "max": 256, "help": "LoRA rank r."})


def lora_alpha_field():
    return field(default=16, metadata={"min": 1, "max": 1024, "help": "LoRA scaling alpha."})


def target_modules_field():
    return field(default="q_proj,v_proj", metadata={"help": "Comma-separated module names that get LoRA adapters."})


def learning_rate_field():
    return field(default=2e-3, metadata={"min": 1e-6, "max": 0.5, "help": "AdamW learning rate."})


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
    lora_rank: int = lora_rank_field()
    lora_alpha: int = lora_alpha_field()
    target_modules: str = target_modules_field()
    learning_rate: float = learning_rate_field()
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
    max_records_per_unit: int = field(default=4, metadata={
        "min": 1, "max": 1024,
        "help": "Records a sampled person (privacy unit) contributes to one step at most (a fresh random sample "
                "each step); with no unit field each record is its own unit."})
    loss_on: str = field(default="response", metadata={
        "choices": ("response", "record"),
        "help": "response: the loss on the response tokens only; record: on every token, the instruction included, "
                "so the adapter learns how the private instructions read and stage 2 can sample them "
                "(generate.prompting=user_turn). The epsilon is the same: DP-SGD bounds the whole example."})
    seed: int = seed_field()


@dataclass(frozen=True)
class FinetunePrivateParams:
    """The `nonprivate` baseline (client): plain LoRA of W_Loc on the raw private training records,
    no DP. Needs the dataset's permission; recorded in the ledger as a non-private release."""

    base_model: str = field(default="smollm2-135m-instruct", metadata={"help": "W_Loc."})
    lora_rank: int = lora_rank_field()
    lora_alpha: int = lora_alpha_field()
    target_modules: str = target_modules_field()
    learning_rate: float = learning_rate_field()
    epochs: float = field(default=1.0, metadata={"min": 0.01, "max": 100.0, "help": "Passes over the private training records."})
    logical_batch_size: int = field(default=16, metadata={"min": 1, "max": 65_536, "help": "Batch size."})
    physical_batch_size: int = field(default=8, metadata={"min": 1, "max": 4096, "help": "Examples per forward pass."})
    max_length: int = field(default=64, metadata={"min": 16, "max": 8192, "help": "Tokens per example."})
    loss_on: str = field(default="response", metadata={
        "choices": ("response", "record"),
        "help": "response: the loss on the response tokens, as stage 1 trains; record: on every token of the whole "
                "record, as a practitioner fitting a plain language model to the records would (the nonprivate "
                "baseline's preset: the leaky upper bound)."})
    records: str = field(default="raw", metadata={
        "choices": ("raw", "scrubbed"),
        "help": "raw: the private records as they are (nonprivate); scrubbed: every PII span the detector finds "
                "replaced by its kind, [NAME], [EMAIL], ... (the scrubbed baseline). The run sets it."})
    seed: int = seed_field("Seed of the batch order.")


KINDS = (
    JobKindSpec("dp_finetune", "DP fine-tuning (stage 1)", CLIENT_QUEUE, DPFinetuneParams,
                stage="privacy.dp_stage.dp_finetune_run", time_limit=8 * 3600,
                settle_lost="privacy.dp_stage.dp_finetune_settle_lost",
                submit="privacy.services.dp_finetune_submit", spends_budget=True,
                outputs=(ArtifactOutput("adapter", "adapter"),)),
    JobKindSpec("finetune_private", "Non-private fine-tuning (baseline)", CLIENT_QUEUE, FinetunePrivateParams,
                stage="privacy.baseline_stage.finetune_private_run", time_limit=8 * 3600,
                submit="privacy.services.finetune_private_submit", spends_budget=True,
                outputs=(ArtifactOutput("adapter", "adapter"),)),
)
