"""DP-LoRA training on a tiny model: the LoRA weights move, the loss goes down, the DP steps
follow the accountant, and the response-only loss mask is right (Opacus issue 820 trap)."""
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from privacy import accountant
from privacy.dp_train import (
    IGNORE_INDEX,
    DPTrainConfig,
    TrainConfigError,
    collate,
    dp_lora_train,
    examples_tokenize,
    lora_wrap,
    per_example_loss,
)
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
