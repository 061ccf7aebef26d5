"""The name reconstruction attack, KnowledgeSG's headline privacy metric.

Take a training record, hide one person name behind "[NAME]", and ask the model to put it back:
  - by likelihood: fill every candidate name in, score the whole record in the chat format the
    model was trained on (user = instruction, assistant = response), rank by log-prob;
  - by generation: give the model the chat text up to the mask, decode greedily, take the first
    name-like words.
A model that did not memorise its data does no better than a random pick from the candidates
(1 / |candidates| top-1). Only the first name occurrence is masked; other mentions of the same
person stay in the text, as they would for an attacker holding a partially redacted record.
"""
import random
import re

import torch

from privacy.pii import pii_find

from .scoring import chat_text, record_logprobs

MASK = "[NAME]"
FIELDS = ("instruction", "response")  # masked in chat order: the first name in the record
RECONSTRUCTION_MAX_LENGTH = 512       # tokens; long enough for a whole demo record
EXAMPLE_ROWS = 5
EXAMPLE_CONTEXT = 120                 # characters of text kept each side of the mask in examples
_NAME_LIKE = re.compile(r"[A-Z][A-Za-z'\-]+(?:[ \t]+[A-Z][A-Za-z'\-]+){0,2}")


def reconstruction_targets(records: list[dict], *, limit: int) -> list[dict]:
    """Up to `limit` records that mention a person (pii_find kind "name"), each with its FIRST
    name occurrence replaced by MASK: {"instruction", "response", "field", "truth", "index"}
    ("field" is where the mask is, "index" the record's position in `records`)."""
    targets = []
    for index, record in enumerate(records):
        if len(targets) >= limit:
            break
        for field in FIELDS:
            names = [span for span in pii_find(record[field]) if span.kind == "name"]
            if names:
                span, text = names[0], record[field]
                masked = text[:span.start] + MASK + text[span.end:]
                targets.append({"instruction": record["instruction"], "response": record["response"],
                                field: masked, "field": field, "truth": span.text, "index": index})
                break
    return targets


def _faker_names() -> tuple[list[str], list[str]]:
    from faker.providers.person.en_US import Provider

    return sorted(Provider.first_names), sorted(Provider.last_names)


def candidate_names(records: list[dict], *, extra: list[str] = (), size: int = 100, seed: int = 0) -> list[str]:
    """A shuffled set of distinct candidate names: every name in `extra` (the targets' true
    names) plus random names found in the records, then random Faker "First Last" names, up to
    `size` in all (more only if `extra` alone is larger)."""
    rng = random.Random(seed)
    chosen = list(dict.fromkeys(extra))
    seen = set(chosen)
    found = sorted({span.text for record in records for field in FIELDS if field in record
                    for span in pii_find(record[field]) if span.kind == "name"})
    rng.shuffle(found)
    first_names, last_names = _faker_names()
    fakes = (f"{rng.choice(first_names)} {rng.choice(last_names)}" for _ in range(100 * size))
    for name in [*found, *fakes]:
        if len(chosen) >= size:
            break
        if name not in seen:
            seen.add(name)
            chosen.append(name)
    rng.shuffle(chosen)  # no order advantage for the true names when scores tie
    return chosen


def _filled(target: dict, name: str) -> dict:
    field = target["field"]
    return {"instruction": target["instruction"], "response": target["response"],
            field: target[field].replace(MASK, name, 1)}


def candidate_logprobs(model, tokenizer, target: dict, candidates: list[str], *,
                       batch_size: int = 32) -> list[float]:
    """Per candidate, the log-prob (nats) of the whole chat-formatted record with the candidate
    in place of the mask. The tokens before the name are the same for every candidate: scoring
    runs them once (evaluation.scoring), then each candidate's name and the rest of its record."""
    return record_logprobs(model, tokenizer, [_filled(target, name) for name in candidates],
                           max_length=RECONSTRUCTION_MAX_LENGTH, batch_size=batch_size)


def reconstruct_by_likelihood(model, tokenizer, target: dict, candidates: list[str], *,
                              batch_size: int = 32) -> list[str]:
    """Candidates ranked best first by the log-prob of the whole chat-formatted record with the
    candidate in place of the mask (candidate_logprobs)."""
    scores = candidate_logprobs(model, tokenizer, target, candidates, batch_size=batch_size)
    order = sorted(range(len(candidates)), key=lambda i: scores[i], reverse=True)
    return [candidates[i] for i in order]


def name_in(text: str) -> str:
    """The first name in a generated continuation: a pii_find name, else the first run of up to
    three capitalised words, else ""."""
    names = [span.text for span in pii_find(text) if span.kind == "name"]
    if names:
        return names[0]
    match = _NAME_LIKE.search(text)
    return match.group() if match else ""


def reconstruct_by_generation(model, tokenizer, target: dict, *, max_new_tokens: int = 8) -> str:
    """Greedy continuation of the chat text up to the mask; the first name-like words in it."""
    full = chat_text(target, tokenizer)
    prefix = full[: full.index(MASK)].rstrip(" \t")
    input_ids = tokenizer(prefix, add_special_tokens=False, return_tensors="pt")["input_ids"]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model.eval()
    with torch.inference_mode():
        output = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_id)
    return name_in(tokenizer.decode(output[0, input_ids.shape[1]:], skip_special_tokens=True))


def _same(guess: str, truth: str) -> bool:
    return " ".join(guess.split()) == " ".join(truth.split())


def _example(target: dict, top_guess: str, generated: str) -> dict:
    text = target[target["field"]]
    at = text.index(MASK)
    window = text[max(0, at - EXAMPLE_CONTEXT): at + len(MASK) + EXAMPLE_CONTEXT]
    return {"masked_text": window, "field": target["field"], "truth": target["truth"],
            "top_guess": top_guess, "generated": generated}


def reconstruction_report(model, tokenizer, train_records: list[dict], *, limit: int = 50,
                          candidate_set_size: int = 100, seed: int = 0) -> dict:
    """Rates (fractions of targets) of likelihood top-1 and top-5 and generation exact match,
    against the random-guess rates; up to EXAMPLE_ROWS example rows. Plain data."""
    targets = reconstruction_targets(train_records, limit=limit)
    candidates = candidate_names(train_records, extra=[t["truth"] for t in targets],
                                 size=candidate_set_size, seed=seed)
    top1 = top5 = generated_hits = 0
    examples = []
    for target in targets:
        ranked = reconstruct_by_likelihood(model, tokenizer, target, candidates)
        generated = reconstruct_by_generation(model, tokenizer, target)
        top1 += _same(ranked[0], target["truth"])
        top5 += any(_same(name, target["truth"]) for name in ranked[:5])
        generated_hits += _same(generated, target["truth"])
        if len(examples) < EXAMPLE_ROWS:
            examples.append(_example(target, ranked[0], generated))
    n = len(targets)
    return {
        "n_targets": n,
        "candidate_set_size": len(candidates),
        "likelihood_top1_rate": top1 / n if n else None,
        "likelihood_top5_rate": top5 / n if n else None,
        "generation_exact_rate": generated_hits / n if n else None,
        "random_guess_rate": 1 / candidate_set_size,
        # every true name is in the set, so a uniform random ranking hits with these rates
        "expected_random_top1_rate": 1 / len(candidates) if candidates else None,
        "expected_random_top5_rate": min(5, len(candidates)) / len(candidates) if candidates else None,
        "examples": examples,
    }
