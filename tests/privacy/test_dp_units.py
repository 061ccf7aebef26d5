"""User-level DP-SGD (issue 21) on a tiny model: a unit's gradient is the sum over its sampled
records, clipped as one; a unit with many records moves the sum by at most C; units are Poisson
sampled with at most k records each, drawn anew every step; epsilon is accounted at the unit rate."""
from collections import Counter

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from privacy.dp import accountant
from privacy.dp.config import DPTrainConfig, TrainConfigError, dp_config_from_params, units_plan
from privacy.dp.train import collate, dp_lora_train, examples_tokenize, lora_wrap, per_example_loss
from privacy.dp.units import noisy_step, unit_gradients_clipped_sum, units_group, units_sample
from privacy.kinds import DPFinetuneParams
from tests.privacy.test_dp_train import RECORDS, lora_model, reference_per_example_grads
from tests.support.tiny_model import tiny_model_dir

NAMES = [record["response"].split()[1] for record in RECORDS]  # the patient: 8 persons, 4 records each


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    texts = [record["instruction"] + " " + record["response"] for record in RECORDS]
    return tiny_model_dir(tmp_path_factory.mktemp("tiny"), texts)


def trainable_of(model) -> tuple[list[str], list[torch.nn.Parameter]]:
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    return [name for name, _ in named], [p for _, p in named]


def clipped_sums(model, examples, pad_id, sampled_list, *, clip, physical_batch_size):
    """unit_gradients_clipped_sum through a GradSampleModule, once per sample in `sampled_list`."""
    from opacus import GradSampleModule

    _, trainable = trainable_of(model)
    grad_model = GradSampleModule(model, loss_reduction="sum")
    try:
        return [unit_gradients_clipped_sum(lambda batch: per_example_loss(grad_model, *collate(pad_id)(batch)),
                                           examples, sampled, trainable=trainable, max_grad_norm=clip,
                                           physical_batch_size=physical_batch_size)[0]
                for sampled in sampled_list]
    finally:
        grad_model.cleanup()


def test_the_per_unit_clipped_sum_equals_a_reference_computed_record_by_record(tiny_dir):
    model, tokenizer = lora_model(tiny_dir, attention="eager")
    names, _ = trainable_of(model)
    examples = examples_tokenize(RECORDS[:16], tokenizer, max_length=48)
    # four units of 3, 1, 2 and 4 records; physical batches of 3 cut across units
    sampled = [[0, 1, 2], [4], [8, 9], [12, 13, 14, 15]]
    per_record = reference_per_example_grads(model, collate(tokenizer.pad_token_id)(examples))  # plain autograd
    unit_grads = [{name: sum(per_record[record][name] for record in records) for name in names} for records in sampled]
    norms = torch.tensor([torch.cat([grads[name].flatten() for name in names]).norm().item() for grads in unit_grads])
    clip = norms.median().item()  # some units clipped, some not
    assert (norms > clip * 1.01).any() and (norms < clip * 0.99).any()
    factors = (clip / (norms + 1e-6)).clamp(max=1.0)
    expected = {name: sum(factor * grads[name] for factor, grads in zip(factors, unit_grads)) for name in names}

    (got,) = clipped_sums(model, examples, tokenizer.pad_token_id, [sampled], clip=clip, physical_batch_size=3)

    for name, tensor in zip(names, got):  # fp32: the two paths differ by rounding only
        assert (tensor - expected[name]).norm() <= 1e-5 * expected[name].norm(), name


def test_a_unit_with_many_records_moves_the_sum_by_at_most_the_clipping_norm(tiny_dir):
    model, tokenizer = lora_model(tiny_dir, attention="eager")
    examples = examples_tokenize(RECORDS[:12], tokenizer, max_length=48)
    examples += [examples[0]] * 20  # one person with 20 records, all the same
    others = [[index] for index in range(12)]
    heavy = list(range(12, 32))
    clip = 0.05

    without, with_heavy = clipped_sums(model, examples, tokenizer.pad_token_id, [others, others + [heavy]],
                                       clip=clip, physical_batch_size=8)
    unclipped_without, unclipped_with = clipped_sums(model, examples, tokenizer.pad_token_id,
                                                     [others, others + [heavy]], clip=1e6, physical_batch_size=8)

    moved = torch.cat([(a - b).flatten() for a, b in zip(with_heavy, without)]).norm().item()
    moved_unclipped = torch.cat([(a - b).flatten() for a, b in zip(unclipped_with, unclipped_without)]).norm().item()
    assert moved_unclipped > 20 * clip  # without the unit clip the person would move it far more
    assert moved == pytest.approx(clip, rel=1e-4)  # clipped as one: exactly C, never more


class GradRecorder:
    """An optimizer stand-in that keeps the .grad noisy_step sets."""

    def __init__(self, params):
        self.params, self.grads = params, None

    def step(self):
        self.grads = [p.grad.clone() for p in self.params]

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None


def test_the_noisy_step_adds_sigma_c_noise_to_the_sum_and_divides_by_the_expected_units():
    params = [torch.nn.Parameter(torch.zeros(40, 50)), torch.nn.Parameter(torch.zeros(30))]
    summed = [torch.randn(40, 50), torch.randn(30)]
    recorder, clip, expected_units, sigma = GradRecorder(params), 0.5, 8, 2.0

    noisy_step(recorder, params, summed, noise_multiplier=0.0, max_grad_norm=clip, expected_units=expected_units,
               generator=torch.Generator().manual_seed(0))
    assert all(torch.allclose(grad, total / expected_units) for grad, total in zip(recorder.grads, summed))
    noisy_step(recorder, params, summed, noise_multiplier=sigma, max_grad_norm=clip, expected_units=expected_units,
               generator=torch.Generator().manual_seed(0))
    noise = torch.cat([(grad * expected_units - total).flatten() for grad, total in zip(recorder.grads, summed)])
    assert noise.std().item() == pytest.approx(sigma * clip, rel=0.05)
    assert abs(noise.mean().item()) < 4 * sigma * clip / noise.numel() ** 0.5


def test_units_are_poisson_sampled_with_at_most_k_records_drawn_anew_each_step():
    units = [f"p{index % 50}" for index in range(50)] + ["p0"] * 9 + ["p1"] * 2  # p0: 10 records, p1: 3
    unit_records = units_group(units)
    assert len(unit_records) == 50 and len(unit_records[0]) == 10 and len(unit_records[1]) == 3
    rate, k, draws = 0.2, 3, 3000

    def draw(seed):
        generator = torch.Generator().manual_seed(seed)
        return [units_sample(unit_records, sample_rate=rate, max_records_per_unit=k, generator=generator)
                for _ in range(draws)]

    steps = draw(seed=7)
    assert steps == draw(seed=7) and steps != draw(seed=8)  # seeded, deterministic
    counts = [len(sampled) for sampled in steps]
    mean = sum(counts) / draws
    variance = sum((count - mean) ** 2 for count in counts) / draws
    assert mean == pytest.approx(50 * rate, abs=4 * (50 * rate * (1 - rate) / draws) ** 0.5)
    assert variance == pytest.approx(50 * rate * (1 - rate), rel=0.15)  # Poisson, not a fixed batch size
    records_per_unit = Counter(units)
    joined = Counter()
    records_of_p0 = Counter()
    for sampled in steps:
        owners = [{units[record] for record in records} for records in sampled]
        assert all(len(owner) == 1 for owner in owners)  # a sampled unit brings only its own records
        assert len({owner.pop() for owner in owners}) == len(sampled)  # each unit at most once a step
        for records in sampled:
            assert len(records) == min(k, records_per_unit[units[records[0]]])
            assert len(set(records)) == len(records)
            joined[units[records[0]]] += 1
            if units[records[0]] == "p0":
                records_of_p0.update(records)
    assert all(count == pytest.approx(draws * rate, rel=0.25) for count in joined.values())  # each unit at rate q
    # p0's 3 records are a fresh uniform sample of its 10 each time it joins
    assert set(records_of_p0) == set(unit_records[0])
    assert all(count == pytest.approx(joined["p0"] * k / 10, rel=0.3) for count in records_of_p0.values())


def unit_run(tiny_dir, *, on_step=None, **overrides):
    config = DPTrainConfig(**{"target_epsilon": 4.0, "delta": 1e-3, "learning_rate": 0.01, "epochs": None, "steps": 6,
                              "logical_batch_size": 2, "physical_batch_size": 2, "max_length": 48, "lora_rank": 4,
                              "max_records_per_unit": 2, **overrides})
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    model = lora_wrap(AutoModelForCausalLM.from_pretrained(tiny_dir), config)
    examples = examples_tokenize(RECORDS, tokenizer, max_length=config.max_length)
    before = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    reports, done = [], []
    result = dp_lora_train(model, examples, config, pad_id=tokenizer.pad_token_id, units=NAMES,
                           on_step=on_step or reports.append, on_step_done=done.append)
    moved = max((p - before[name]).abs().max().item() for name, p in model.named_parameters() if p.requires_grad)
    return config, model, result, reports, done, moved


def test_epsilon_is_accounted_at_the_unit_rate_not_the_record_rate(tiny_dir):
    config, _, result, reports, _, _ = unit_run(tiny_dir)
    unit_rate, record_rate = 2 / 8, 2 / 32  # B = 2 expected persons of 8; the records are 32
    assert result.sample_rate == unit_rate and all(report.sample_rate == unit_rate for report in reports)
    assert result.noise_multiplier == accountant.noise_calibrate(
        sample_rate=unit_rate, steps=6, delta=1e-3, target_epsilon=4.0, accountant="prv").noise_multiplier
    for report in reports:
        assert report.epsilon == pytest.approx(accountant.epsilon_compute(
            sample_rate=unit_rate, noise_multiplier=result.noise_multiplier, steps=report.step, delta=1e-3,
            accountant="prv"))
    at_record_rate = accountant.epsilon_compute(sample_rate=record_rate, noise_multiplier=result.noise_multiplier,
                                                steps=6, delta=1e-3, accountant="prv")
    assert at_record_rate < 0.7 * result.epsilon  # the record rate would understate the per-person epsilon


def test_a_unit_level_run_reaches_its_planned_steps_within_the_target(tiny_dir):
    config, model, result, reports, done, moved = unit_run(tiny_dir, steps=None, epochs=2.0)
    assert result.unit_level and result.planned_steps == 8 == result.steps  # 2 epochs of 8 persons, 2 per step
    assert [report.step for report in reports] == list(range(1, 9))
    epsilons = [report.epsilon for report in reports]
    assert epsilons == sorted(epsilons) and result.epsilon == epsilons[-1] <= config.target_epsilon
    assert all(report.batch_size <= 2 * report.units for report in done)  # at most k = 2 records a person
    assert all(report.batch_size == 2 * report.units for report in done)  # every person has 4 >= k records
    assert {report.units for report in done} != {2}  # Poisson: the number of persons varies
    assert moved > 1e-4
    assert not any(hasattr(p, "grad_sample") for p in model.parameters())  # Opacus' hooks are gone


def test_a_callback_stops_a_unit_level_run_before_the_noise_of_a_step(tiny_dir):
    started = []

    def stop_at_three(report):
        if report.step == 3:
            raise KeyboardInterrupt("stop")
        started.append(report.step)

    with pytest.raises(KeyboardInterrupt):
        unit_run(tiny_dir, on_step=stop_at_three)
    assert started == [1, 2]


def test_units_must_name_every_record_and_be_at_least_the_batch(tiny_dir):
    config = DPTrainConfig(target_epsilon=4.0, delta=1e-3, epochs=None, steps=2, logical_batch_size=2,
                           physical_batch_size=2)
    with pytest.raises(TrainConfigError, match="units name 3 records"):
        dp_lora_train(None, [([1], [1])] * 4, config, pad_id=0, units=["a", "a", "b"])
    with pytest.raises(TrainConfigError, match="1 privacy units"):
        units_plan(config, 1)
    assert units_plan(config, 8) == (2, 0.25)
    with pytest.raises(TrainConfigError, match="max_records_per_unit must be at least 1"):
        DPTrainConfig(target_epsilon=4.0, delta=1e-3, epochs=1.0, max_records_per_unit=0)


def test_the_job_parameter_reaches_the_training_config():
    params = DPFinetuneParams(max_records_per_unit=7)
    assert dp_config_from_params(params, delta=1e-5, accountant="prv").max_records_per_unit == 7
    assert DPFinetuneParams().max_records_per_unit == 4
