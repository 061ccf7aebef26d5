"""DP-LoRA training on a tiny model: the LoRA weights move, the loss goes down, the DP steps
follow the accountant, and the response-only loss mask is right (Opacus issue 820 trap)."""
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from privacy.dp import accountant
from privacy.dp.train import (IGNORE_INDEX, DPTrainConfig, TrainConfigError, collate, dp_lora_train,
    examples_tokenize, lora_wrap, per_example_loss)
from tests.support.tiny_model import tiny_model_dir

RECORDS = [
    {"instruction": f"Patient {name} reports {symptom} . What should they do ?",
     "response": f"Dear {name} , for {symptom} rest and drink water ."}
    for name in ("Alice", "Bob", "Carol", "Dan", "Erin", "Frank", "Grace", "Heidi")
    for symptom in ("headache", "fever", "cough", "nausea")
]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    texts = [record["instruction"] + " " + record["response"] for record in RECORDS]
    return tiny_model_dir(tmp_path_factory.mktemp("tiny"), texts)


def load(tiny_dir, config):
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    model = lora_wrap(AutoModelForCausalLM.from_pretrained(tiny_dir), config)
    return model, tokenizer


def lora_state(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if "lora_" in name}


def training_loss(model, examples, pad_id) -> float:
    model.eval()
    with torch.no_grad():
        input_ids, attention, labels = collate(pad_id)(examples)
        value = per_example_loss(model, input_ids, attention, labels).mean().item()
    model.train()
    return value


def train(tiny_dir, **overrides):
    config = DPTrainConfig(**{"target_epsilon": 8.0, "delta": 1e-3, "learning_rate": 0.01, "steps": 30,
                              "logical_batch_size": 8, "physical_batch_size": 4, "max_length": 48,
                              "lora_rank": 4, "epochs": None,
                              "target_modules": ("q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"),
                              **overrides})
    model, tokenizer = load(tiny_dir, config)
    examples = examples_tokenize(RECORDS, tokenizer, max_length=config.max_length)
    before_weights, before_loss = lora_state(model), training_loss(model, examples, tokenizer.pad_token_id)
    reports = []
    result = dp_lora_train(model, examples, config, pad_id=tokenizer.pad_token_id, on_step=reports.append)
    after_loss = training_loss(model, examples, tokenizer.pad_token_id)
    moved = max((p - before_weights[name]).abs().max().item() for name, p in lora_state(model).items())
    return config, result, reports, before_loss, after_loss, moved


def test_loss_mask_covers_only_the_response(tiny_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    (ids, labels), = examples_tokenize(RECORDS[:1], tokenizer, max_length=64)
    learned = tokenizer.decode([token for token, label in zip(ids, labels) if label != IGNORE_INDEX])
    assert learned.startswith("Dear Alice") and "<|im_end|>" in learned
    assert "Patient" not in learned and "reports" not in learned


def test_whole_record_loss_covers_the_prompt_too(tiny_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    (ids, labels), = examples_tokenize(RECORDS[:1], tokenizer, max_length=64, whole_record=True)
    (same_ids, response_labels), = examples_tokenize(RECORDS[:1], tokenizer, max_length=64)
    assert labels == ids and same_ids == ids
    assert sum(label != IGNORE_INDEX for label in response_labels) < len(ids)
    assert "Patient" in tokenizer.decode(labels)


def test_long_examples_keep_part_of_their_response(tiny_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    record = {"instruction": " ".join(["headache"] * 200), "response": " ".join(["water"] * 200)}
    (ids, labels), = examples_tokenize([record], tokenizer, max_length=32)
    assert len(ids) == 32 and sum(label != IGNORE_INDEX for label in labels) >= 8


def test_non_dp_control_run_moves_lora_weights_and_lowers_the_loss(tiny_dir):
    _, result, _, before, after, moved = train(tiny_dir, dp=False)
    assert result.steps == 30 and result.epsilon is None
    assert moved > 1e-3
    assert after < before * 0.8


def test_dp_run_with_low_noise_moves_lora_weights_and_lowers_the_loss(tiny_dir):
    config, result, reports, before, after, moved = train(tiny_dir, target_epsilon=300.0, accountant="rdp", max_grad_norm=10.0)
    assert result.noise_multiplier is not None and result.noise_multiplier < 0.5
    assert moved > 1e-3  # the Opacus + PEFT trap: LoRA weights that never change
    assert after < before * 0.8


def test_dp_steps_report_the_accountants_epsilon_and_stay_within_the_target(tiny_dir):
    config, result, reports, *_ = train(tiny_dir, target_epsilon=3.0, steps=12, learning_rate=0.01)
    assert [report.step for report in reports] == list(range(1, 13))
    epsilons = [report.epsilon for report in reports]
    assert epsilons == sorted(epsilons) and epsilons[-1] <= 3.0
    assert result.epsilon == epsilons[-1] == pytest.approx(
        accountant.epsilon_compute(sample_rate=8 / 32, noise_multiplier=result.noise_multiplier, steps=12,
                                   delta=1e-3, accountant="prv"))
    assert result.sample_rate == 8 / 32


def test_a_callback_can_stop_training_before_the_noise_of_a_step(tiny_dir):
    config = DPTrainConfig(target_epsilon=3.0, delta=1e-3, steps=10, epochs=None, logical_batch_size=8,
                           physical_batch_size=8, max_length=48, lora_rank=4)
    model, tokenizer = load(tiny_dir, config)
    examples = examples_tokenize(RECORDS, tokenizer, max_length=48)
    started = []

    def stop_at_four(report):
        if report.step == 4:
            raise KeyboardInterrupt("stop")
        started.append(report.step)

    with pytest.raises(KeyboardInterrupt):
        dp_lora_train(model, examples, config, pad_id=tokenizer.pad_token_id, on_step=stop_at_four)
    assert started == [1, 2, 3]


@pytest.mark.parametrize("overrides, message", [
    ({"epochs": 1.0, "steps": 5}, "exactly one of epochs and steps"),
    ({"physical_batch_size": 32}, "physical_batch_size must be between"),
    ({"delta": 1.0}, "delta must be a probability"),
    ({"target_epsilon": float("nan")}, "target_epsilon must be a positive number"),
])
def test_impossible_configs_are_refused(overrides, message):
    base = {"target_epsilon": 1.0, "delta": 1e-5, "epochs": None, "steps": 5}
    with pytest.raises(TrainConfigError, match=message):
        DPTrainConfig(**{**base, **overrides})


# --- the fast training path against the reference path ------------------------------------------

def lora_model(tiny_dir, *, dtype=torch.float32, attention="sdpa"):
    config = DPTrainConfig(target_epsilon=8.0, delta=1e-3, lora_rank=4, steps=1, epochs=None, max_length=48)
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=dtype)
    base.set_attn_implementation(attention)
    model = lora_wrap(base, config)
    torch.manual_seed(3)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:  # B starts at zero, which would make every gradient of A zero
                parameter.copy_(0.3 * torch.randn_like(parameter))
    return model, tokenizer


def reference_per_example_grads(model, batch) -> list[dict[str, torch.Tensor]]:
    """Each example's LoRA gradient on its own: full logits, plain autograd, no Opacus."""
    input_ids, attention, labels = batch
    grads = []
    for row in range(input_ids.shape[0]):
        model.zero_grad()
        one = slice(row, row + 1)
        per_example_loss(model, input_ids[one], attention[one], labels[one], full_logits=True).sum().backward()
        grads.append({name: p.grad.detach().clone() for name, p in model.named_parameters() if p.requires_grad})
    model.zero_grad()
    return grads


def test_the_scored_only_loss_equals_the_full_logits_loss_with_its_gradients(tiny_dir):
    model, tokenizer = lora_model(tiny_dir)
    batch = collate(tokenizer.pad_token_id)(examples_tokenize(RECORDS[:6], tokenizer, max_length=48))

    fast = per_example_loss(model, *batch)
    fast.sum().backward()
    fast_grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    full = per_example_loss(model, *batch, full_logits=True)
    full.sum().backward()

    assert torch.allclose(fast, full, atol=1e-6)
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert torch.allclose(fast_grads[name], p.grad, rtol=1e-5, atol=1e-5), name


# bf16 base weights round each example's gradient (up to about 11% of its norm on this tiny random
# model); clipping and noise then apply to the gradients as computed, so the privacy bound holds.
@pytest.mark.parametrize("dtype, attention, tolerance", [(torch.float32, "eager", 1e-5), (torch.bfloat16, "eager", 0.25)])
def test_the_fast_dp_step_clips_each_example_and_adds_the_calibrated_noise(tiny_dir, dtype, attention, tolerance):
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    reference, tokenizer = lora_model(tiny_dir)
    batch = collate(tokenizer.pad_token_id)(examples_tokenize(RECORDS[:6], tokenizer, max_length=48))
    expected = reference_per_example_grads(reference, batch)
    fast, _ = lora_model(tiny_dir, dtype=dtype, attention=attention)
    names = [name for name, p in fast.named_parameters() if p.requires_grad]
    with torch.no_grad():  # the same LoRA weights as the reference
        weights = dict(reference.named_parameters())
        for name, parameter in fast.named_parameters():
            if parameter.requires_grad:
                parameter.copy_(weights[name])
    assert all(p.dtype == torch.float32 for p in fast.parameters() if p.requires_grad)  # LoRA stays fp32
    wrapped = GradSampleModule(fast)
    clip, batch_size = 0.05, 6

    def step(noise_multiplier: float, seed: int) -> dict[str, torch.Tensor]:
        optimizer = DPOptimizer(torch.optim.SGD([p for p in fast.parameters() if p.requires_grad], lr=0.0),
                                noise_multiplier=noise_multiplier, max_grad_norm=clip, expected_batch_size=batch_size)
        torch.manual_seed(seed)
        per_example_loss(wrapped, *batch).mean().backward()  # as training does (Opacus: loss_reduction "mean")
        samples = {name: p.grad_sample.clone() for name, p in zip(names, optimizer.params)}
        optimizer.pre_step()  # clip, sum, noise, scale: what step() applies
        grads = {name: p.grad.clone() for name, p in zip(names, optimizer.params)}
        optimizer.zero_grad()
        return samples, grads

    samples, clipped = step(0.0, seed=0)
    # per-example gradients: those of the reference path, example by example
    for name in names:
        for row in range(batch_size):
            want, got = expected[row][name], samples[name][row]
            assert (got - want).norm() <= tolerance * want.norm() + 1e-8, (name, row)
    # clipping: each example's whole gradient scaled to norm <= clip, then averaged over B
    norms = torch.stack([torch.cat([samples[n][row].flatten() for n in names]).norm() for row in range(batch_size)])
    assert (norms > clip).any(), "pick a smaller clip: no example was clipped"
    factors = (clip / (norms + 1e-6)).clamp(max=1.0)
    for name in names:
        manual = (samples[name] * factors.view(-1, *[1] * (samples[name].dim() - 1))).sum(0) / batch_size
        assert torch.allclose(clipped[name], manual, atol=1e-7), name
    # noise: N(0, (sigma * clip)^2) on the sum, so sigma * clip / B on the mean
    sigma = 2.0
    _, noisy = step(sigma, seed=1)
    noise = torch.cat([(noisy[n] - clipped[n]).flatten() for n in names])
    assert noise.numel() > 500
    assert noise.std().item() == pytest.approx(sigma * clip / batch_size, rel=0.1)
    assert abs(noise.mean().item()) < 4 * sigma * clip / batch_size / noise.numel() ** 0.5


def test_a_plain_step_over_length_sorted_trimmed_chunks_equals_one_step_over_the_padded_batch(tiny_dir):
    """The non-DP step runs its physical chunks shortest first, each cut to its own longest
    example: the gradient (and so the update) is that of the whole padded batch."""
    records = [dict(record, response=record["response"] * (1 + 3 * (index % 2))) for index, record in enumerate(RECORDS[:8])]
    config = DPTrainConfig(target_epsilon=1.0, delta=0.5, dp=False, learning_rate=0.01, steps=1, epochs=None,
                           logical_batch_size=8, physical_batch_size=3, max_length=96, lora_rank=4, lora_dropout=0.0,
                           target_modules=("q_proj", "v_proj"))
    torch.manual_seed(0)
    model, tokenizer = load(tiny_dir, config)
    torch.manual_seed(0)
    reference, _ = load(tiny_dir, config)
    examples = examples_tokenize(records, tokenizer, max_length=config.max_length)
    assert len({len(ids) for ids, _ in examples}) > 1  # short and long examples in one batch

    dp_lora_train(model, examples, config, pad_id=tokenizer.pad_token_id)
    trainable = [p for p in reference.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.0)
    reference.train()
    input_ids, attention, labels = collate(tokenizer.pad_token_id)(examples)
    (per_example_loss(reference, input_ids, attention, labels).sum() / len(examples)).backward()
    optimizer.step()

    trained, expected = lora_state(model), lora_state(reference)
    assert max((trained[name] - expected[name]).abs().max().item() for name in trained) < 1e-5
    assert max((expected[name] - value).abs().max().item() for name, value in lora_state(load(tiny_dir, config)[0]).items()
               if "lora_B" in name) > 1e-4  # the step moved the weights (B starts at zero)
