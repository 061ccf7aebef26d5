"""User-level DP-SGD: the privacy unit is a person (a patient, a customer), not a record.

A clinic's records are not independent: one patient has many. Record-level DP bounds what one
record changes; here the bound is on everything one person contributes. One step:
  1. sample  - Poisson over units: each of the n distinct units joins with probability
               q = B / n, independently; a sampled unit brings a uniform sample of at most
               k = max_records_per_unit of its records, drawn anew every step;
  2. clip    - per-record gradients (Opacus' GradSampleModule), summed per unit; each unit's
               summed gradient (over all LoRA weights together) scaled to norm <= C;
  3. noise   - the sum of the clipped unit gradients plus N(0, (sigma * C)^2) per coordinate,
               divided by B (the expected number of units per step), then the AdamW step;
  4. account - epsilon of the Poisson-subsampled Gaussian at the UNIT rate q after t steps.
One unit changes the pre-noise sum by at most C whatever its number of records, so the
subsampled-Gaussian accounting applies with units in place of records. It needs Poisson
sampling: shuffled batches accounted as Poisson understate epsilon (Chua et al. 2024).

Written by hand, not with Opacus' PrivacyEngine: Opacus clips per example (per row of the
batch), not per group of rows, and has no user-level sampler. Opacus still computes the
per-record gradients (GradSampleModule); this module samples, groups and clips them, and noises
the sum. The loop that calibrates sigma, accounts each step and stops at the target is
privacy.dp.train's _train_units, beside the record-level loop.
"""
from typing import Callable, Hashable

import torch

# Added to a unit's gradient norm before dividing, as Opacus' own clipping does (no 0 / 0).
CLIP_EPSILON = 1e-6


def units_group(units: list[Hashable]) -> list[list[int]]:
    """The record indices of each distinct unit, units in order of first appearance."""
    records_of: dict[Hashable, list[int]] = {}
    for index, unit in enumerate(units):
        records_of.setdefault(unit, []).append(index)
    return list(records_of.values())


def units_sample(unit_records: list[list[int]], *, sample_rate: float, max_records_per_unit: int,
                 generator: torch.Generator) -> list[list[int]]:
    """1. sample: each unit joins with probability `sample_rate`, independently (Poisson); a joined
    unit contributes a uniform sample, without replacement, of min(max_records_per_unit, its count)
    of its records. Returns the record indices of each sampled unit (possibly no unit at all)."""
    joins = torch.rand(len(unit_records), generator=generator) < sample_rate
    sampled = []
    for unit in joins.nonzero().flatten().tolist():
        records = unit_records[unit]
        if len(records) > max_records_per_unit:
            chosen = torch.randperm(len(records), generator=generator)[:max_records_per_unit]
            records = [records[position] for position in sorted(chosen.tolist())]
        sampled.append(list(records))
    return sampled


def unit_gradients_clipped_sum(record_losses: Callable[[list], torch.Tensor], examples: list, sampled: list[list[int]],
                               *, trainable: list[torch.nn.Parameter], max_grad_norm: float,
                               physical_batch_size: int) -> tuple[list[torch.Tensor], list[float]]:
    """2. clip: per-record gradients, summed per sampled unit, each unit's sum clipped to norm <=
    max_grad_norm over all `trainable` parameters together, then summed over the units.
    `record_losses(batch)` returns each record's loss (shape (len(batch),)) computed through an
    Opacus GradSampleModule with loss_reduction "sum", so that after `.sum().backward()` each
    trainable parameter's grad_sample[i] is record i's own gradient. Physical batches hold at
    most `physical_batch_size` records; a unit's records may span several.
    Returns (the clipped sum, one fp32 tensor per trainable parameter; each record's loss)."""
    unit_sums = [torch.zeros((len(sampled), *p.shape), dtype=torch.float32, device=p.device) for p in trainable]
    rows = [(position, record) for position, records in enumerate(sampled) for record in records]
    losses: list[float] = []
    for start in range(0, len(rows), physical_batch_size):
        chunk = rows[start:start + physical_batch_size]
        batch_losses = record_losses([examples[record] for _, record in chunk])
        batch_losses.sum().backward()
        for unit_sum, param in zip(unit_sums, trainable):
            owners = torch.tensor([position for position, _ in chunk], device=unit_sum.device)
            unit_sum.index_add_(0, owners, param.grad_sample[: len(chunk)].float())
            param.grad_sample, param.grad = None, None  # nothing carries over to the next batch
        losses.extend(batch_losses.detach().tolist())
    if not sampled:
        return [torch.zeros(p.shape, dtype=torch.float32, device=p.device) for p in trainable], losses
    norms = torch.stack([unit_sum.flatten(1).norm(dim=1) for unit_sum in unit_sums], dim=1).norm(dim=1)
    factors = (max_grad_norm / (norms + CLIP_EPSILON)).clamp(max=1.0)
    return [torch.tensordot(factors, unit_sum, dims=1) for unit_sum in unit_sums], losses


def noisy_step(optimizer, trainable: list[torch.nn.Parameter], clipped_sum: list[torch.Tensor], *,
               noise_multiplier: float, max_grad_norm: float, expected_units: float,
               generator: torch.Generator) -> None:
    """3. noise: clipped sum + N(0, (noise_multiplier * max_grad_norm)^2) per coordinate, divided
    by the expected number of units per step, as each parameter's .grad; then the optimizer step."""
    std = noise_multiplier * max_grad_norm
    for param, summed in zip(trainable, clipped_sum):
        noise = torch.normal(0.0, std, size=summed.shape, generator=generator, device=generator.device)
        param.grad = ((summed + noise.to(summed.device)) / expected_units).to(param.dtype)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
