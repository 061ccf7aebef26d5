"""One tiny model fine-tuned (LoRA, no DP) until it memorises its training records and a planted
canary, shared by the evaluation tests: built once per test session (about 10 s)."""
import functools
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer

from privacy.canary import SECRET_ALPHABET, canary_records
from privacy.demo_data import demo_records
from privacy.dp.train import DPTrainConfig, dp_lora_train, examples_tokenize, lora_wrap
from tests.support.tiny_model import tiny_model_dir

N_TRAIN = 32
N_HELDOUT = 32
CANARY_REPEATS = 4  # Carlini et al. insert canaries several times too
MAX_LENGTH = 160


@dataclass(frozen=True)
class Memorised:
    model: object            # the LoRA-trained model
    base: object             # the same tiny model, untrained
    tokenizer: object
    train: list[dict]        # members (without the canary)
    heldout: list[dict]      # non-members
    canary: dict             # planted CANARY_REPEATS times in training
    unseen_canary: dict      # never trained on
    seconds: float           # time to build and train


def config(**overrides) -> DPTrainConfig:
    return DPTrainConfig(**{
        "target_epsilon": 8.0, "delta": 1e-3, "dp": False, "steps": 60, "epochs": None,
        "learning_rate": 0.01, "logical_batch_size": 8, "physical_batch_size": 8, "max_length": MAX_LENGTH,
        "lora_rank": 8, "target_modules": ("q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"),
        **overrides})


@functools.cache
def memorised() -> Memorised:
    started = time.monotonic()
    records = demo_records(domain="medical", n=N_TRAIN + N_HELDOUT, seed=7)
    train, heldout = records[:N_TRAIN], records[N_TRAIN:]
    canary, unseen_canary = canary_records(2, seed=3)
    texts = [r["instruction"] + " " + r["response"] for r in records + [canary]] + [" ".join(SECRET_ALPHABET)]
    directory = tiny_model_dir(Path(tempfile.mkdtemp(prefix="ksg-eval-tiny-")), texts, hidden_size=64)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    settings = config()
    model = lora_wrap(AutoModelForCausalLM.from_pretrained(directory), settings)
    examples = examples_tokenize(train + [canary] * CANARY_REPEATS, tokenizer, max_length=MAX_LENGTH)
    dp_lora_train(model, examples, settings, pad_id=tokenizer.pad_token_id)
    model.eval()
    base = AutoModelForCausalLM.from_pretrained(directory).eval()
    return Memorised(model, base, tokenizer, train, heldout, canary, unseen_canary, time.monotonic() - started)
