"""What a generation request is, shared by both backends (generation.TransformersBackend and
vllm_backend.VLLMBackend): chat prompts and their validation, sampling parameters, completions,
the token ids of prompts and candidate words, batch plans and per-batch seeds."""
import math
from dataclasses import dataclass
from pathlib import Path

from .chat import prompt_text

ROLES = ("system", "user", "assistant")

Prompt = list[dict]


class GenerationError(ValueError):
    """A generation request or setup that cannot run; the message says what to fix."""


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. temperature 0 means greedy; top_p is the nucleus mass (a probability);
    max_new_tokens counts generated tokens (the EOS token included); seed makes runs repeatable."""

    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 128
    seed: int = 0

    def __post_init__(self):
        checks = [
            (is_number(self.temperature) and 0 <= self.temperature <= 5,
             f"temperature must be a number in [0, 5] (0 = greedy), got {self.temperature!r}"),
            (is_number(self.top_p) and 0 < self.top_p <= 1,
             f"top_p must be a probability in (0, 1], got {self.top_p!r}"),
            (is_int(self.max_new_tokens) and 1 <= self.max_new_tokens <= 4096,
             f"max_new_tokens must be a whole number of tokens in [1, 4096], got {self.max_new_tokens!r}"),
            (is_int(self.seed) and self.seed >= 0, f"seed must be a non-negative integer, got {self.seed!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise GenerationError(message)


@dataclass(frozen=True)
class Completion:
    """One generated answer. Token counts are in tokens; finish_reason is "stop" when the model
    produced an end-of-sequence token (not part of `text`), "length" when max_new_tokens ran out."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- prompts and candidate tokens (shared by both backends) ---------------------------------

def prompts_validate(prompts: list[Prompt]) -> None:
    """Raise GenerationError naming the first malformed prompt."""
    if not isinstance(prompts, list):
        raise GenerationError("prompts must be a list of chat prompts (lists of {role, content} messages)")
    for index, messages in enumerate(prompts):
        if not isinstance(messages, list) or not messages:
            raise GenerationError(f"prompt {index} must be a non-empty list of chat messages")
        for position, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ROLES \
                    or not isinstance(message.get("content"), str):
                raise GenerationError(
                    f"prompt {index} has a malformed message {message!r}: each message must be "
                    f"{{'role': one of {ROLES}, 'content': str}}"
                )
            if message.get("open") and (message["role"] != "user" or position != len(messages) - 1):
                raise GenerationError(f"prompt {index}: only its last message may be open, and only a user's "
                                      f"(the model then writes the user's turn); got {message!r}")


def prompt_token_ids(tokenizer, messages: Prompt) -> list[int]:
    """Token ids of `prompt_text` (synthesis.lm.chat: the format training used). No special tokens
    are added: chat templates write their own (BOS included where the model wants it), and
    privacy.dp.train trains on the same encoding."""
    return tokenizer(prompt_text(tokenizer, messages), add_special_tokens=False)["input_ids"]


def candidate_token_ids(tokenizer, word: str) -> list[int]:
    """The distinct first-token ids of `word` written six ways: as given, lower case and
    capitalised ("yes", "Yes"), each bare and after a space ("yes", " yes"). A first token counts
    only if it decodes to a non-empty prefix of the word (case-insensitive, spaces stripped), which
    drops unknown tokens and lone-space pieces that some tokenizers split off first. A one-letter
    word keeps its case: a judge's "A" is not the article "a"."""
    ids = []
    forms = [word] if len(word) == 1 else [word, word.lower(), word.capitalize()]
    for form in dict.fromkeys(forms):
        for text in (form, " " + form):
            encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
            if not encoded or encoded[0] in ids:
                continue
            piece = tokenizer.decode([encoded[0]]).strip()
            if piece and (word.startswith(piece) if len(word) == 1 else word.lower().startswith(piece.lower())):
                ids.append(encoded[0])
    return ids


def batches_plan(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Prompt indices grouped into batches of similar length (longest first, so a batch that
    does not fit in memory fails at once rather than at the end); ties keep input order."""
    order = sorted(range(len(lengths)), key=lambda index: (-lengths[index], index))
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def batch_seed(seed: int, first_index: int) -> int:
    """The torch seed of the batch whose first prompt is `first_index`: a function of the
    request only, so results do not depend on timing or on what ran before."""
    return (seed * 1_000_003 + first_index) % (2 ** 63)


def adapter_dir_check(adapter_path: Path) -> Path:
    """`adapter_path` if it is a PEFT adapter directory, else a GenerationError saying so."""
    adapter_path = Path(adapter_path)
    if not (adapter_path / "adapter_config.json").is_file():
        raise GenerationError(
            f"{adapter_path} is not a LoRA adapter directory: it has no adapter_config.json "
            f"(give the directory the client's DP training saved with save_pretrained)"
        )
    return adapter_path
