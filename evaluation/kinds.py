"""The evaluation app's job kind: privacy attacks and utility of a model, client side (it reads
the private records to attack them)."""
from dataclasses import dataclass, field

from jobs.kinds import CLIENT_QUEUE, ArtifactInput, JobKindSpec, JobParamsError, seed_field

from .sequential import MAX_LOOKS, smallest_cap

# the sizes that are caps of a sequentially sampled attack or judge (evaluation.sequential)
SEQUENTIAL_CAPS = {"reconstruction_targets": "targets", "generation_records": "questions",
                   "canary_references": "reference secrets"}


@dataclass(frozen=True)
class EvaluateParams:
    """Evaluation (client): privacy attacks and utility of an adapter against the base model."""

    adapter_artifact: int = field(default=0, metadata={"min": 1, "help": "Artifact id of the adapter to evaluate."})
    synthetic_artifact: int = field(default=0, metadata={"min": 0, "help": "Artifact id of its synthetic data (0: none)."})
    dp_adapter_artifact: int = field(default=0, metadata={
        "min": 0, "help": "Artifact id of the run's stage-1 DP adapter, audited beside the model (0: none)."})
    base_model: str = field(default="smollm2-135m-instruct", metadata={"help": "The model the adapter belongs to."})
    professional_model: str = field(default="smollm2-135m-instruct", metadata={"help": "W_Pro, the win-rate judge."})
    max_records: int = field(default=100, metadata={"min": 2, "max": 100_000, "help": "Records per split used."})
    max_length: int = field(default=128, metadata={"min": 16, "max": 8192, "help": "Tokens per scored record."})
    reconstruction_targets: int = field(default=30, metadata={
        "min": 1, "max": 10_000, "help": "Names to reconstruct, at most (the attack stops when its interval decides)."})
    candidate_set_size: int = field(default=100, metadata={"min": 2, "max": 10_000, "help": "Candidate names per target."})
    generation_records: int = field(default=10, metadata={
        "min": 1, "max": 10_000, "help": "Held-out questions answered and judged, at most (drawn from the whole held-out split; the judge "
                "stops when its consistency decides)."})
    max_new_tokens: int = field(default=64, metadata={"min": 4, "max": 4096, "help": "Tokens per generated answer."})
    canary_references: int = field(default=1000, metadata={"min": 10, "max": 1_000_000, "help": "Random secrets each planted canary is ranked against, at most (exposure resolution: log2 of this, in bits; a canary stops when its exposure interval is 1 bit wide)."})
    sequential_looks: int = field(default=1, metadata={
        "min": 1, "max": MAX_LOOKS, "help": "Looks of the reconstruction attack, membership inference, the judge and each canary's references: "
        "each samples C/4, C/2, C (3 looks) of its cap C and stops at the first look that decides (1: all of C)."})
    seed: int = seed_field("Seed of the attacks' sampling and of the held-out questions drawn.")

    def __post_init__(self):
        # every planned look must add items: a cap below 2^(looks - 1) would repeat a size
        smallest = smallest_cap(self.sequential_looks)
        for name, unit in SEQUENTIAL_CAPS.items():
            cap = getattr(self, name)
            if cap < smallest:
                raise JobParamsError(
                    f"evaluate.{name}={cap} is too small for sequential_looks={self.sequential_looks}: the looks double "
                    f"their sample up to the cap, so {self.sequential_looks} looks need a cap of at least {smallest} "
                    f"{unit}; raise {name} or lower sequential_looks")


KINDS = (
    JobKindSpec("evaluate", "Evaluation", CLIENT_QUEUE, EvaluateParams,
                stage="evaluation.stage.evaluate_run", time_limit=6 * 3600,
                # the model the run produced (its newest adapter) and, where stage 5 ran, its synthetic data
                inputs=(ArtifactInput("adapter_artifact", "adapter"),
                        ArtifactInput("synthetic_artifact", "synthetic_data", "synthetic_dataset.jsonl", required=False),
                        # stage 1's DP adapter (dp_finetune names it "adapter"), audited beside the model
                        ArtifactInput("dp_adapter_artifact", "adapter", "adapter", required=False))),
)
