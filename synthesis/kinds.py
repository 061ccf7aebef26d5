"""The synthesis app's job kinds: stages 2-5 of KnowledgeSG, all server side (they receive
artifact ids, never a private dataset)."""
from dataclasses import dataclass, field

from jobs.kinds import SERVER_QUEUE, ArtifactInput, ArtifactOutput, JobKindSpec, seed_field
from privacy.kinds import learning_rate_field, lora_alpha_field, lora_rank_field, target_modules_field

from .filtering import PII_ACTIONS
from .prompts import PROMPTING

# the files the stages record, which the next stage of a run reads
RAW_FILE, KEPT_FILE, PAIRS_FILE = "raw_instructions.jsonl", "kept_instructions.jsonl", "synthetic_pairs.jsonl"
SYNTHETIC_FILE = "synthetic_dataset.jsonl"  # stage 5's copy of the pairs it trained on, beside its adapter


def domain_field():
    return field(default="medical", metadata={"choices": ("medical", "finance"), "help": "medical or finance."})


def backend_field():
    return field(default="auto", metadata={"choices": ("auto", "transformers", "vllm"),
                                           "help": "auto: vLLM where CUDA and vllm exist, else transformers."})


@dataclass(frozen=True)
class GenerateParams:
    """Stage 2 (server): sample raw instructions from W_Loc + the stage-1 DP adapter."""

    adapter_artifact: int = field(default=0, metadata={"min": 0, "help": "Artifact id of the DP adapter (0: the base model alone, the self_instruct baseline)."})
    base_model: str = field(default="smollm2-135m-instruct", metadata={"help": "W_Loc: the model the adapter was trained on."})
    domain: str = domain_field()
    num_instructions: int = field(default=60, metadata={"min": 1, "max": 100_000, "help": "Raw instructions to sample."})
    prompting: str = field(default="few_shot", metadata={
        "choices": PROMPTING,
        "help": "few_shot: ask for a new message like public seed examples; user_turn: open the user's turn of an "
                "empty chat and let the adapter write it (needs a stage-1 adapter trained with "
                "dp_finetune.loss_on=record: it has learned how the private instructions read)."})
    few_shot: int = field(default=3, metadata={"min": 1, "max": 10, "help": "Public seed examples per prompt (few_shot)."})
    temperature: float = field(default=0.9, metadata={"min": 0.0, "max": 2.0, "help": "Sampling temperature."})
    top_p: float = field(default=0.95, metadata={"min": 0.01, "max": 1.0, "help": "Nucleus sampling mass."})
    max_new_tokens: int = field(default=48, metadata={"min": 4, "max": 1024, "help": "Tokens per instruction."})
    seed: int = seed_field("Sampling seed.")
    backend: str = backend_field()


@dataclass(frozen=True)
class FilterParams:
    """Stage 3 (server): near-duplicates, relevance judged by W_Pro, PII."""

    raw_artifact: int = field(default=0, metadata={"min": 1, "help": "Artifact id of the raw instructions."})
    professional_model: str = field(default="smollm2-135m-instruct", metadata={"help": "W_Pro, the relevance judge."})
    domain: str = domain_field()
    dedup_threshold: float = field(default=0.7, metadata={"min": 0.0, "max": 1.0, "help": "ROUGE-L F1 above which an instruction is a near-duplicate."})
    relevance_threshold: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0, "help": "Minimum p(yes) of W_Pro's relevance verdict."})
    pii_action: str = field(default="drop", metadata={
        "choices": PII_ACTIONS,
        "help": "drop: an instruction with a name, email, phone or id is dropped; mask: those spans are replaced by "
                "their kind ([NAME]) and it goes on. Nothing personal travels onward either way."})
    backend: str = backend_field()


@dataclass(frozen=True)
class DistillParams:
    """Stage 4 (server): W_Pro writes the response to each kept instruction."""

    kept_artifact: int = field(default=0, metadata={"min": 1, "help": "Artifact id of the kept instructions."})
    professional_model: str = field(default="smollm2-135m-instruct", metadata={"help": "W_Pro, who writes the responses."})
    domain: str = domain_field()
    temperature: float = field(default=0.3, metadata={"min": 0.0, "max": 2.0, "help": "Sampling temperature (0: greedy)."})
    top_p: float = field(default=0.9, metadata={"min": 0.01, "max": 1.0, "help": "Nucleus sampling mass."})
    max_new_tokens: int = field(default=96, metadata={"min": 4, "max": 4096, "help": "Tokens per response."})
    seed: int = seed_field("Sampling seed.")
    backend: str = backend_field()


@dataclass(frozen=True)
class FinetuneTargetParams:
    """Stage 5 (server): plain LoRA of W_Loc on the synthetic pairs (they never saw D_pri)."""

    synthetic_artifact: int = field(default=0, metadata={"min": 1, "help": "Artifact id of the synthetic pairs."})
    base_model: str = field(default="smollm2-135m-instruct", metadata={"help": "W_Loc."})
    lora_rank: int = lora_rank_field()
    lora_alpha: int = lora_alpha_field()
    target_modules: str = target_modules_field()
    learning_rate: float = learning_rate_field()
    epochs: float = field(default=1.0, metadata={"min": 0.01, "max": 100.0, "help": "Passes over the synthetic pairs."})
    logical_batch_size: int = field(default=8, metadata={"min": 1, "max": 65_536, "help": "Batch size."})
    physical_batch_size: int = field(default=8, metadata={"min": 1, "max": 4096, "help": "Examples per forward pass."})
    max_length: int = field(default=128, metadata={"min": 16, "max": 8192, "help": "Tokens per example."})
    seed: int = seed_field("Seed of the batch order.")


KINDS = (
    JobKindSpec("generate", "Instruction generation (stage 2)", SERVER_QUEUE, GenerateParams,
                stage="synthesis.stages.generate_run", time_limit=6 * 3600,
                inputs=(ArtifactInput("adapter_artifact", "adapter", "adapter"),),
                outputs=(ArtifactOutput("synthetic_data", RAW_FILE),)),
    JobKindSpec("filter", "Filtering (stage 3)", SERVER_QUEUE, FilterParams,
                stage="synthesis.stages.filter_run", time_limit=4 * 3600,
                inputs=(ArtifactInput("raw_artifact", "synthetic_data", RAW_FILE),),
                outputs=(ArtifactOutput("synthetic_data", KEPT_FILE),)),
    JobKindSpec("distill", "Distillation (stage 4)", SERVER_QUEUE, DistillParams,
                stage="synthesis.stages.distill_run", time_limit=6 * 3600,
                inputs=(ArtifactInput("kept_artifact", "synthetic_data", KEPT_FILE),),
                outputs=(ArtifactOutput("synthetic_data", PAIRS_FILE),)),
    JobKindSpec("finetune_target", "Target fine-tuning (stage 5)", SERVER_QUEUE, FinetuneTargetParams,
                stage="synthesis.stages.finetune_target_run", time_limit=8 * 3600,
                inputs=(ArtifactInput("synthetic_artifact", "synthetic_data", PAIRS_FILE),),
                outputs=(ArtifactOutput("synthetic_data", SYNTHETIC_FILE), ArtifactOutput("adapter", "target_adapter"))),
)
