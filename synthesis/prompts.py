"""Prompts of the server-side stages, as data. Few-shot examples come only from the public seed
files in synthesis/seeds/ (shipped with the project), never from a private dataset."""
import json
import random
import re
from functools import cache
from pathlib import Path

SEED_DIR = Path(__file__).resolve().parent / "seeds"
DOMAINS = ("medical", "finance")

# Stage 2: sampling raw instructions from W_Loc + the DP adapter, one of two ways:
#   few_shot   asks the model, in a chat, to write a new message like public seed examples;
#   user_turn  opens the user's turn of an empty chat and lets the model write it: an adapter trained
#              with the instruction in its loss (dp_finetune.loss_on=record) writes what the private
#              instructions read like, which few_shot's request never asks of it.
PROMPTING = ("few_shot", "user_turn")
GENERATION_SYSTEM = {
    "medical": "You write realistic messages that patients send to their doctor.",
    "finance": "You write realistic questions and requests that clients and analysts send to a financial expert.",
}
GENERATION_USER = (
    "Here are examples:\n{examples}\n\n"
    "Write one new message of the same kind, different from the examples. "
    "Reply with the message only."
)

# Stage 4: W_Pro writes the response to each kept instruction.
DISTILL_SYSTEM = {
    "medical": (
        "You are an experienced physician. Answer the patient's message accurately, helpfully and "
        "concisely, say when they should see a doctor in person, and do not invent personal details."
    ),
    "finance": (
        "You are an experienced financial analyst. Answer accurately and concisely; for sentiment "
        "questions give the sentiment (positive, negative or neutral) and a one-sentence reason."
    ),
}


class PromptError(ValueError):
    """An unknown domain or a broken seed file."""


@cache
def seed_instructions(domain: str) -> tuple[str, ...]:
    """The public few-shot examples of a domain."""
    if domain not in DOMAINS:
        raise PromptError(f"unknown domain {domain!r}; choose one of {', '.join(DOMAINS)}")
    data = json.loads((SEED_DIR / f"{domain}.json").read_text(encoding="utf-8"))
    examples = tuple(text.strip() for text in data["instructions"] if text.strip())
    if len(examples) < 3:
        raise PromptError(f"seed file for {domain} has fewer than 3 examples")
    return examples


def generation_prompts(*, domain: str, count: int, few_shot: int, seed: int) -> list[list[dict]]:
    """`count` chat prompts, each with `few_shot` seed examples drawn for that prompt (so the
    sampled instructions vary); deterministic for a seed."""
    examples = seed_instructions(domain)
    few_shot = max(1, min(few_shot, len(examples)))
    prompts = []
    for index in range(count):
        chosen = random.Random(seed * 1_000_003 + index).sample(examples, few_shot)
        listing = "\n".join(f"{number}. {text}" for number, text in enumerate(chosen, 1))
        prompts.append([
            {"role": "system", "content": GENERATION_SYSTEM[domain]},
            {"role": "user", "content": GENERATION_USER.format(examples=listing)},
        ])
    return prompts


def user_turn_prompts(count: int) -> list[list[dict]]:
    """`count` identical prompts, each an empty chat with the user's turn opened
    (synthesis.lm.chat.user_turn_text); the sampler's per-prompt seeds make the samples differ."""
    return [[{"role": "user", "content": "", "open": True}] for _ in range(count)]


def distill_prompts(instructions: list[str], *, domain: str) -> list[list[dict]]:
    if domain not in DOMAINS:
        raise PromptError(f"unknown domain {domain!r}; choose one of {', '.join(DOMAINS)}")
    return [[{"role": "system", "content": DISTILL_SYSTEM[domain]}, {"role": "user", "content": text}]
            for text in instructions]


# Small models often wrap the requested message: "Here's a new message: ...", "1. ... 2. ...".
_PREAMBLE = re.compile(
    r"^(here(?:'s| is| are)|sure|okay|ok|certainly|of course|i'll|i will|let's|new (?:message|example|question)"
    r"|original|rewritten|example|message|question)\b[^:\n]{0,80}:\s*", re.IGNORECASE)
_LIST_MARKER = re.compile(r"^(?:\d+[.)]|[-*\u2022]|[A-Z][:.)])\s+")
_NEXT_ITEM = re.compile(r"\s+(?:\d+[.)]|[A-Z]:)\s+")


def instruction_extract(generated: str, *, min_words: int = 3) -> str:
    """The instruction inside a generated message: the first line with at least `min_words`
    words once a preamble ("Here's a new message:"), a list marker and any following
    enumerated items are removed, skipping lines that end in a colon; "" if there is none."""
    for line in generated.splitlines():
        line = _PREAMBLE.sub("", line.strip()).strip()
        line = _LIST_MARKER.sub("", line).strip()
        line = _NEXT_ITEM.split(line)[0].strip().strip('"').strip()
        if line.endswith(":"):
            continue  # a line that introduces what follows
        if len(line.split()) >= min_words:
            return line
    return ""


# Without a chat template a sampled user turn runs on into the plain format's response header.
_PLAIN_TURN_END = re.compile(r"\n*###\s*(?:Response|Instruction)\s*:")


def user_turn_instruction(generated: str, *, min_words: int = 3) -> str:
    """The instruction in a sampled user turn: the whole text up to a plain-format header, its
    ends stripped (a patient's message keeps its lines and sign-off); "" when it has fewer than
    `min_words` words."""
    text = _PLAIN_TURN_END.split(generated, maxsplit=1)[0].strip()
    return text if len(text.split()) >= min_words else ""
