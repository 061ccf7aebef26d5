"""Stage 1's configuration, checked once at the edge, and the plan it implies (steps T and
Poisson sample rate q): plain Python, so the services that validate a submission and the pages
never import torch (privacy.dp.train, the training loop, does)."""
import math
from dataclasses import dataclass


# What the model files say about the data. The Poisson sample rate q and the step count T are part
# of the guarantee (an auditor recomputes epsilon from them), and q = expected batch / n gives the
# training set's size n. The platform treats n as public, as DP deployments commonly do: the
# guarantee covers each unit's content and its membership, not how many units there are.
DATASET_SIZE_POLICY = (
    "public: the number of training records (and of persons, where the dataset names its privacy unit) is "
    "stated as it is (it also follows from the sample rate and the step count, which the guarantee needs); "
    "differential privacy here protects each unit's content and membership (a record's, or a person's records "
    "together), not the dataset's size")


class TrainConfigError(ValueError):
    """A training configuration that cannot run; the message says what to fix."""


@dataclass(frozen=True)
class DPTrainConfig:
    """Stage-1 settings. epsilon is dimensionless, delta a probability, lengths in tokens."""

    target_epsilon: float
    delta: float
    accountant: str = "prv"
    dp: bool = True                 # False: the same LoRA training without clipping or noise
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    learning_rate: float = 2e-3
    epochs: float | None = 1.0      # exactly one of epochs and steps
    steps: int | None = None
    logical_batch_size: int = 16    # the expected Poisson batch size B
    physical_batch_size: int = 8    # examples per forward/backward (memory)
    max_length: int = 64
    max_grad_norm: float = 1.0
    max_records_per_unit: int = 1   # user-level DP: records one sampled unit (person) gives a step, at most
    seed: int = 0

    def __post_init__(self):
        if (self.epochs is None) == (self.steps is None):
            raise TrainConfigError("give exactly one of epochs and steps")
        checks = [
            (self.dp is False or (math.isfinite(self.target_epsilon) and self.target_epsilon > 0),
             "target_epsilon must be a positive number"),
            (0 < self.delta < 1, "delta must be a probability strictly between 0 and 1"),
            (self.lora_rank >= 1 and self.lora_alpha >= 1, "lora_rank and lora_alpha must be at least 1"),
            (0 <= self.lora_dropout < 1, "lora_dropout must be in [0, 1)"),
            (bool(self.target_modules), "target_modules must name at least one module"),
            (0 < self.learning_rate < 1, "learning_rate must be in (0, 1)"),
            (self.epochs is None or 0 < self.epochs <= 100, "epochs must be in (0, 100]"),
            (self.steps is None or self.steps >= 1, "steps must be at least 1"),
            (1 <= self.physical_batch_size <= self.logical_batch_size,
             "physical_batch_size must be between 1 and logical_batch_size"),
            (8 <= self.max_length <= 8192, "max_length must be between 8 and 8192 tokens"),
            (self.max_grad_norm > 0, "max_grad_norm must be positive"),
            (self.max_records_per_unit >= 1, "max_records_per_unit must be at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise TrainConfigError(message)


def planned_steps(config: DPTrainConfig, n_train: int) -> tuple[int, float]:
    """(T, q): steps to run and the Poisson sample rate q = B / N, where N counts privacy units:
    the records when each record is its own unit (record-level DP), the persons otherwise
    (units_plan). B, the logical batch size, is then the expected number of units per step, and
    an epoch is N / B steps of units."""
    if n_train < config.logical_batch_size:
        raise TrainConfigError(
            f"the training split has {n_train} records, fewer than logical_batch_size "
            f"{config.logical_batch_size}; lower the batch size or add records"
        )
    sample_rate = config.logical_batch_size / n_train
    steps = config.steps or max(1, math.ceil(config.epochs / sample_rate))
    return steps, sample_rate


def units_plan(config: DPTrainConfig, n_units: int) -> tuple[int, float]:
    """(T, q) for user-level DP-SGD over `n_units` distinct persons: planned_steps with N the
    number of units, q = B / n_units (B expected units per step); refused, in the units' words,
    when there are fewer units than B."""
    if n_units < config.logical_batch_size:
        raise TrainConfigError(
            f"the training split has {n_units} privacy units (persons), fewer than logical_batch_size "
            f"{config.logical_batch_size} (the expected units per step); lower the batch size or add people"
        )
    return planned_steps(config, n_units)


def dp_config_from_params(params, *, delta: float, accountant: str) -> DPTrainConfig:
    """Job parameters (privacy.kinds.DPFinetuneParams) plus the budget's delta and accountant."""
    return DPTrainConfig(
        target_epsilon=params.target_epsilon, delta=delta, accountant=accountant,
        lora_rank=params.lora_rank, lora_alpha=params.lora_alpha,
        target_modules=tuple(name.strip() for name in params.target_modules.split(",") if name.strip()),
        learning_rate=params.learning_rate, epochs=None if params.steps else params.epochs,
        steps=params.steps or None, logical_batch_size=params.logical_batch_size,
        physical_batch_size=params.physical_batch_size, max_length=params.max_length,
        max_grad_norm=params.max_grad_norm, max_records_per_unit=params.max_records_per_unit, seed=params.seed,
    )
