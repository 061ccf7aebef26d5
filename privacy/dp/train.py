"""DP-LoRA fine-tuning of a causal LM (KnowledgeSG stage 1), with Opacus and PEFT.

One DP-SGD step, in the paper's words:
  1. sample   - a Poisson batch: each training record joins with probability q = B / N;
  2. clip     - each example's gradient (LoRA weights only) to norm <= max_grad_norm;
  3. noise    - add N(0, (sigma * max_grad_norm)^2) to the sum, divide by B, take the step;
  4. account  - epsilon after t steps of the subsampled Gaussian, from privacy.dp.accountant.
Sigma is calibrated before training so that the planned T steps stay within the target
epsilon; the loop still checks each step and stops at the last one within the target.
With `units` (the person each record belongs to) the same four steps run over persons, not
records: user-level DP-SGD (_train_units here, its sample / clip / noise in privacy.dp.units).

The progress callback is called BEFORE each step's noise is drawn, with the epsilon that step
will have spent: whoever records it (the job's ledger) never under-counts, even if the process
dies in the middle of the step.
"""
import importlib.util
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Hashable

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from synthesis.lm.chat import record_prompt_response

from . import accountant as dp_accountant
from .config import DPTrainConfig, TrainConfigError, planned_steps, units_plan  # noqa: F401  (the loop's configuration)
from .units import noisy_step, unit_gradients_clipped_sum, units_group, units_sample

IGNORE_INDEX = -100


@dataclass
class StepReport:
    """What the loop reports about step `step` (1-based) of `planned_steps`."""

    step: int
    planned_steps: int
    epsilon: float | None           # spent once this step's noise is drawn; None without DP
    noise_multiplier: float | None
    sample_rate: float
    loss: float | None = None       # mean per-example loss of the step's batch (after it ran)
    batch_size: int | None = None   # records in the step
    seconds: float | None = None
    units: int | None = None        # units (persons) sampled in the step; None at record level

    def training_metric(self) -> dict:
        """The step as a training stage's `metric` event shows it (loss vs step on the run page)."""
        return {"step": self.step, "loss": self.loss, "batch_size": self.batch_size, "seconds": self.seconds}


@dataclass
class TrainResult:
    steps: int
    planned_steps: int
    sample_rate: float
    noise_multiplier: float | None
    epsilon: float | None
    losses: list[float] = field(default_factory=list)
    secure_rng: bool = False  # sampling and noise from a cryptographically secure generator
    unit_level: bool = False  # the privacy unit is the person (units given), not the record


def examples_tokenize(records: list[dict], tokenizer, *, max_length: int,
                      whole_record: bool = False) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) per record: the chat-formatted prompt is masked out of the labels,
    so the loss is on the response tokens only (whole_record=True: on every token, the prompt's
    too, as a practitioner training a plain language model on the records would). Response
    loss: long prompts lose their beginning, long responses their end, and every example keeps at
    least a quarter of max_length for its response. Whole record: a long record loses its end, as
    a language model's training text does (the instruction's beginning is what stage 2 samples)."""
    examples = []
    for record in records:
        prompt_text, response_text = record_prompt_response(record, tokenizer, end_of_sequence=True)
        prompt = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
        response = tokenizer(response_text, add_special_tokens=False)["input_ids"]
        if whole_record:
            ids = (prompt + response)[:max_length]
            examples.append((ids, list(ids)))
            continue
        keep_prompt = max_length - min(len(response), max(max_length // 4, max_length - len(prompt)))
        prompt = prompt[-keep_prompt:] if keep_prompt > 0 else []
        response = response[: max_length - len(prompt)]
        examples.append((prompt + response, [IGNORE_INDEX] * len(prompt) + response))
    return examples


def collate(pad_id: int):
    def pad(batch):
        longest = max((len(ids) for ids, _ in batch), default=1)
        input_ids = torch.full((len(batch), longest), pad_id, dtype=torch.long)
        labels = torch.full((len(batch), longest), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, (ids, labs) in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            labels[row, : len(labs)] = torch.tensor(labs)
            attention[row, : len(ids)] = 1
        return input_ids, attention, labels

    return pad


def per_example_loss(model, input_ids, attention_mask, labels, *, full_logits: bool = False) -> torch.Tensor:
    """Mean next-token cross-entropy over each example's response tokens, shape (batch,).
    The output layer runs only where a token is scored (the response positions): the prompt's
    logits, a 49,152-wide product per position on the embedded model, are never computed.
    full_logits=True computes every position's logits (the reference path; same values)."""
    targets = labels[:, 1:]
    counted = targets != IGNORE_INDEX
    body, head = (None, None) if full_logits else _decoder_and_head(model)
    if body is None:  # not a decoder + output layer we can split: the whole logits tensor
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
        token_loss = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none")
        return (token_loss * counted).sum(1) / counted.sum(1).clamp(min=1)
    hidden = body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, :-1]
    logits = head(hidden[counted]).float()
    token_loss = F.cross_entropy(logits, targets[counted], reduction="none")
    rows = counted.nonzero()[:, 0]
    totals = torch.zeros(input_ids.shape[0], dtype=token_loss.dtype, device=token_loss.device)
    totals = totals.index_add(0, rows, token_loss)
    return totals / counted.sum(1).clamp(min=1)


def _decoder_and_head(model):
    """(decoder, output layer) of a causal LM, through the Opacus and PEFT wrappers; (None, None)
    when the model does not expose them (get_decoder / get_output_embeddings)."""
    inner = getattr(model, "_module", model)  # opacus GradSampleModule
    if hasattr(inner, "get_base_model"):  # peft PeftModel
        inner = inner.get_base_model()
    try:
        body, head = inner.get_decoder(), inner.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None, None
    return (body, head) if body is not None and head is not None else (None, None)


def lora_wrap(model, config: DPTrainConfig):
    from peft import LoraConfig, get_peft_model  # deferred: peft loads transformers; only training needs it

    lora = LoraConfig(
        r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules), task_type="CAUSAL_LM", bias="none",
    )
    return get_peft_model(model, lora)


def dp_lora_train(
    model, examples: list[tuple[list[int], list[int]]], config: DPTrainConfig, *, pad_id: int,
    units: list[Hashable] | None = None,
    on_step: Callable[[StepReport], None] = lambda report: None,
    on_step_done: Callable[[StepReport], None] = lambda report: None,
) -> TrainResult:
    """Train LoRA weights on `examples` (from examples_tokenize) in place; `model` must already
    be LoRA-wrapped (lora_wrap). `units`, one id per example (the person it belongs to), makes
    the DP training user-level (_train_units); None, each record is its own unit (Opacus).
    Without DP (config.dp False) units change nothing.
    `on_step` runs before each step's noise (raise from it to stop, e.g. on cancel);
    `on_step_done` after the step with its loss."""
    if units is not None and len(units) != len(examples):
        raise TrainConfigError(f"units name {len(units)} records, the examples are {len(examples)}")
    if units is not None and config.dp:
        return _train_units(model, examples, units, config, pad_id=pad_id, on_step=on_step,
                            on_step_done=on_step_done)
    torch.manual_seed(config.seed)
    steps, sample_rate = planned_steps(config, len(examples))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.0)
    loader = DataLoader(examples, batch_size=config.logical_batch_size, shuffle=True,
                        collate_fn=collate(pad_id), generator=torch.Generator().manual_seed(config.seed))
    model.train()
    if not config.dp:
        return _train_plain(model, optimizer, loader, config, steps, sample_rate, on_step, on_step_done)

    # Calibrate: the smallest sigma (to the accountant's tolerance) whose epsilon after T steps
    # is within the target. Never above it (noise_calibrate guarantees it).
    calibration = dp_accountant.noise_calibrate(
        sample_rate=sample_rate, steps=steps, delta=config.delta,
        target_epsilon=config.target_epsilon, accountant=config.accountant,
    )
    sigma = calibration.noise_multiplier
    from opacus import PrivacyEngine  # deferred: opacus loads only for DP training
    from opacus.utils.batch_memory_manager import BatchMemoryManager  # deferred (as above)

    # Opacus' hooks warn that no input requires a gradient: true (embeddings are frozen), harmless.
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    # Cryptographically secure sampling and noise need torchcsprng; where it is not installed
    # (it is not, on this CPU build) the run uses torch's RNG and privacy.json says so.
    secure_rng = importlib.util.find_spec("torchcsprng") is not None
    warnings.filterwarnings("ignore", message="Secure RNG turned off")
    engine = PrivacyEngine(accountant=config.accountant, secure_mode=secure_rng)
    dp_model, dp_optimizer, dp_loader = engine.make_private(
        module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=sigma,
        max_grad_norm=config.max_grad_norm, poisson_sampling=True,  # 1. sample: Poisson, rate q
    )
    result = TrainResult(0, steps, sample_rate, sigma, None, secure_rng=secure_rng)
    with BatchMemoryManager(data_loader=dp_loader, max_physical_batch_size=config.physical_batch_size,
                            optimizer=dp_optimizer) as physical_loader:
        while result.steps < steps:
            step_losses, started, report = [], time.monotonic(), None
            for input_ids, attention_mask, labels in physical_loader:
                # Opacus queues, per physical batch, whether the optimizer step will be skipped
                # (accumulate only); the last physical batch of a logical batch takes the step.
                takes_step = not dp_optimizer._check_skip_next_step(pop_next=False)
                if report is None:
                    # 4. account, before the noise is drawn: epsilon once this step is taken.
                    epsilon = dp_accountant.epsilon_compute(
                        sample_rate=sample_rate, noise_multiplier=sigma, steps=result.steps + 1,
                        delta=config.delta, accountant=config.accountant,
                    )
                    if epsilon > config.target_epsilon:
                        return result  # stop at the last step within the target
                    report = StepReport(result.steps + 1, steps, epsilon, sigma, sample_rate)
                    on_step(report)
                if input_ids.shape[0] == 0:  # an empty Poisson batch still takes a noisy step
                    for param in trainable:
                        param.grad_sample = torch.zeros((0, *param.shape), dtype=param.dtype)
                else:
                    losses = per_example_loss(dp_model, input_ids, attention_mask, labels)
                    losses.mean().backward()  # 2. clip happens in the optimizer, per example
                    step_losses.extend(losses.detach().tolist())
                dp_optimizer.step()          # 3. noise + update (skipped until the last physical batch)
                dp_optimizer.zero_grad()
                if takes_step:
                    break
            result.steps, result.epsilon = report.step, report.epsilon
            report.loss = sum(step_losses) / len(step_losses) if step_losses else None
            report.batch_size, report.seconds = len(step_losses), time.monotonic() - started
            result.losses.append(report.loss)
            on_step_done(report)
    return result


def _train_units(model, examples, units: list[Hashable], config: DPTrainConfig, *, pad_id: int,
                 on_step: Callable[[StepReport], None], on_step_done: Callable[[StepReport], None]) -> TrainResult:
    """User-level DP-SGD (privacy.dp.units): Poisson sampling of units at q = B / n_units, each
    unit's summed gradient clipped to C, noise as at record level, epsilon per unit at rate q.
    Written by hand: Opacus clips per example (per row), not per group of rows, and has no
    user-level sampler; it is used only for the per-record gradients (GradSampleModule)."""
    from opacus import GradSampleModule  # deferred: opacus loads only for DP training

    torch.manual_seed(config.seed)
    unit_records = units_group(units)
    steps, sample_rate = units_plan(config, len(unit_records))
    sigma = dp_accountant.noise_calibrate(  # the smallest sigma whose T steps at the unit rate fit the target
        sample_rate=sample_rate, steps=steps, delta=config.delta,
        target_epsilon=config.target_epsilon, accountant=config.accountant,
    ).noise_multiplier
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.0)
    sampling_rng, noise_rng, secure_rng = _unit_generators(config, trainable[0].device)
    warnings.filterwarnings("ignore", message="Full backward hook is firing")  # frozen embeddings: harmless
    grad_model = GradSampleModule(model, loss_reduction="sum")
    collate_batch = collate(pad_id)

    def record_losses(batch) -> torch.Tensor:
        return per_example_loss(grad_model, *(t.to(trainable[0].device) for t in collate_batch(batch)))

    model.train()
    result = TrainResult(0, steps, sample_rate, sigma, None, secure_rng=secure_rng, unit_level=True)
    try:
        while result.steps < steps:
            # 4. account, before the noise is drawn: epsilon once this step is taken, at the unit rate.
            epsilon = dp_accountant.epsilon_compute(
                sample_rate=sample_rate, noise_multiplier=sigma, steps=result.steps + 1,
                delta=config.delta, accountant=config.accountant,
            )
            if epsilon > config.target_epsilon:
                break  # stop at the last step within the target
            report = StepReport(result.steps + 1, steps, epsilon, sigma, sample_rate)
            on_step(report)
            started = time.monotonic()
            sampled = units_sample(unit_records, sample_rate=sample_rate,  # 1. sample: Poisson over units
                                   max_records_per_unit=config.max_records_per_unit, generator=sampling_rng)
            clipped_sum, losses = unit_gradients_clipped_sum(  # 2. clip each unit's summed gradient
                record_losses, examples, sampled, trainable=trainable, max_grad_norm=config.max_grad_norm,
                physical_batch_size=config.physical_batch_size)
            noisy_step(optimizer, trainable, clipped_sum, noise_multiplier=sigma,  # 3. noise, even on no unit
                       max_grad_norm=config.max_grad_norm, expected_units=config.logical_batch_size,
                       generator=noise_rng)
            result.steps, result.epsilon = report.step, report.epsilon
            report.loss = sum(losses) / len(losses) if losses else None
            report.batch_size, report.units, report.seconds = len(losses), len(sampled), time.monotonic() - started
            result.losses.append(report.loss)
            on_step_done(report)
    finally:
        grad_model.cleanup()  # the model leaves without Opacus' hooks and grad_sample attributes
    return result


def _unit_generators(config: DPTrainConfig, device) -> tuple[torch.Generator, torch.Generator, bool]:
    """(sampling, noise, secure): torchcsprng's secure generator for both where it is installed
    (as the record path decides), else torch generators seeded from config.seed, the noise one
    on the trainable weights' device."""
    if importlib.util.find_spec("torchcsprng") is not None:
        import torchcsprng  # deferred: an optional package

        secure = torchcsprng.create_random_device_generator("/dev/urandom")
        return secure, secure, True
    return (torch.Generator().manual_seed(config.seed),
            torch.Generator(device=device).manual_seed(config.seed + 1), False)


def _train_plain(model, optimizer, loader, config, steps, sample_rate, on_step, on_step_done) -> TrainResult:
    """The non-private control: same LoRA, shuffled batches of B, gradient accumulation."""
    result = TrainResult(0, steps, sample_rate, None, None)
    while result.steps < steps:
        for input_ids, attention_mask, labels in loader:
            if result.steps >= steps:
                break
            report = StepReport(result.steps + 1, steps, None, None, sample_rate)
            on_step(report)
            started, step_losses = time.monotonic(), []
            # shortest examples first, each chunk cut to its own longest: a short record (an audit
            # canary) padded to the batch's longest would cost as much as that one; same gradient
            lengths = attention_mask.sum(dim=1)
            order = torch.argsort(lengths, stable=True)
            for chunk in range(0, input_ids.shape[0], config.physical_batch_size):
                rows = order[chunk: chunk + config.physical_batch_size]
                width = max(int(lengths[rows].max()), 1)
                losses = per_example_loss(model, input_ids[rows, :width], attention_mask[rows, :width],
                                          labels[rows, :width])
                (losses.sum() / input_ids.shape[0]).backward()
                step_losses.extend(losses.detach().tolist())
            optimizer.step()
            optimizer.zero_grad()
            result.steps = report.step
            report.loss, report.batch_size = sum(step_losses) / len(step_losses), len(step_losses)
            report.seconds = time.monotonic() - started
            result.losses.append(report.loss)
            on_step_done(report)
    return result


def plain_lora_train(model, tokenizer, records: list[dict], params, *,
                     on_step: Callable[[StepReport], None] = lambda report: None,
                     on_step_done: Callable[[StepReport], None] = lambda report: None,
                     on_model: Callable[[object], None] = lambda model: None) -> tuple[object, TrainResult]:
    """LoRA fine-tuning WITHOUT DP (no clipping, no noise) of `model` on `records`, with the
    stage-1 code path: used by stage 5 (synthetic pairs) and the `nonprivate` baseline (raw
    private records). `params` carries lora_rank, lora_alpha, target_modules, learning_rate,
    epochs, logical/physical_batch_size, max_length and seed, and may carry loss_on ("response",
    the default, or "record": examples_tokenize's whole_record). on_model gets the LoRA-wrapped
    model before the first step (to evaluate it between steps). Returns (peft model, result)."""
    n = len(records)
    config = DPTrainConfig(
        target_epsilon=1.0, delta=0.5, dp=False, lora_rank=params.lora_rank, lora_alpha=params.lora_alpha,
        target_modules=tuple(name.strip() for name in params.target_modules.split(",") if name.strip()),
        learning_rate=params.learning_rate, epochs=params.epochs,
        logical_batch_size=min(params.logical_batch_size, n),
        physical_batch_size=min(params.physical_batch_size, params.logical_batch_size, n),
        max_length=params.max_length, seed=params.seed,
    )
    model = lora_wrap(model, config)
    on_model(model)
    whole_record = getattr(params, "loss_on", "response") == "record"
    examples = examples_tokenize(records, tokenizer, max_length=config.max_length, whole_record=whole_record)
    result = dp_lora_train(model, examples, config, pad_id=tokenizer.pad_token_id, on_step=on_step,
                           on_step_done=on_step_done)
    return model, result
