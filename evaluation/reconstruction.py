"""The name reconstruction attack, KnowledgeSG's headline privacy metric.

Take a training record, hide one person behind placeholders, and ask the model to put the name
back:
  - by likelihood: fill every candidate name in, score the whole record in the chat format the
    model was trained on (user = instruction, assistant = response), rank by log-prob;
  - by generation: give the model the chat text up to the first placeholder, decode greedily,
    take the first name-like words.
EVERY mention of the person is masked, in both fields: the full name ("[NAME]"), its first and
last words on their own ("[FIRST]", "[LAST]": "Dear Ms. [LAST]", "Thanks, [FIRST]") and their
lower-case forms ("[first].[last]@mail.com"). A candidate is filled into every placeholder at
once. With any mention left in the text the attack would measure copying from context (a model
that never saw the record reads the name off its signature), not memorisation. A model that did
not memorise its data does no better than a random pick from the candidates (1 / |candidates|
top-1). Other people in the record (the doctor) stay: they are not the target.
"""
import random
import re

import torch

from privacy.pii import pii_find
from synthesis.lm.chat import record_text

from .scoring import record_logprobs

MASK = "[NAME]"
FIELDS = ("instruction", "response")  # in chat order
RECONSTRUCTION_MAX_LENGTH = 512       # tokens; long enough for a whole demo record
EXAMPLE_ROWS = 5
EXAMPLE_CONTEXT = 120                 # characters of text kept each side of the first placeholder
_NAME_LIKE = re.compile(r"[A-Z][A-Za-z'\-]+(?:[ \t]+[A-Z][A-Za-z'\-]+){0,2}")
# placeholder -> (part of the name, lower-cased?)
PLACEHOLDERS = {"[NAME]": ("name", False), "[FIRST]": ("first", False), "[LAST]": ("last", False),
                "[name]": ("name", True), "[first]": ("first", True), "[last]": ("last", True)}
_PLACEHOLDER = re.compile("|".join(re.escape(p) for p in PLACEHOLDERS))


def name_parts(name: str) -> dict[str, str]:
    """{"name", "first", "last"} of a full name: the whole, its first word, its last word."""
    words = name.split()
    return {"name": " ".join(words), "first": words[0], "last": words[-1]}


def _mask_person(text: str, parts: dict[str, str]) -> str:
    """text with every whole-word mention of the person (full name, first or last word, any
    case) replaced by its placeholder."""
    alternatives = sorted({parts["name"], parts["first"], parts["last"]}, key=len, reverse=True)
    pattern = re.compile(r"(?<![A-Za-z'\-])(" + "|".join(re.escape(a) for a in alternatives) + r")(?![A-Za-z'\-])",
                         re.IGNORECASE)

    def placeholder(match: re.Match) -> str:
        found = match.group()
        part = next(key for key in ("name", "first", "last") if found.lower() == parts[key].lower())
        lower = found == found.lower() and found != parts[part]
        return f"[{part}]" if lower else f"[{part.upper()}]"

    return pattern.sub(placeholder, text)


def fill(text: str, name: str) -> str:
    """A masked text with `name` (its parts, its lower-case forms) in every placeholder."""
    parts = name_parts(name)

    def part(match: re.Match) -> str:
        key, lower = PLACEHOLDERS[match.group()]
        return parts[key].lower() if lower else parts[key]

    return _PLACEHOLDER.sub(part, text)


def reconstruction_targets(records: list[dict], *, limit: int) -> list[dict]:
    """Up to `limit` records that mention a person by full name (the first pii_find "name" span
    of two or more words), each with EVERY mention of that person masked in both fields:
    {"instruction", "response", "truth", "index", "field", "first_mask"} ("field" holds the first
    placeholder in chat order, "first_mask" is that placeholder, "index" the record's position in
    `records`)."""
    targets = []
    for index, record in enumerate(records):
        if len(targets) >= limit:
            break
        full_names = [span.text for field in FIELDS for span in pii_find(record[field])
                      if span.kind == "name" and len(span.text.split()) >= 2]
        if not full_names:
            continue
        truth = " ".join(full_names[0].split())
        parts = name_parts(truth)
        masked = {field: _mask_person(record[field], parts) for field in FIELDS}
        field = next(field for field in FIELDS if _PLACEHOLDER.search(masked[field]))
        targets.append({**masked, "truth": truth, "index": index, "field": field,
                        "first_mask": _PLACEHOLDER.search(masked[field]).group()})
    return targets


def _faker_names() -> tuple[list[str], list[str]]:
    from faker.providers.person.en_US import Provider  # deferred: faker's name lists load only when an attack draws candidates

    return sorted(Provider.first_names), sorted(Provider.last_names)


def candidate_names(records: list[dict], *, extra: list[str] = (), size: int = 100, seed: int = 0) -> list[str]:
    """A shuffled set of distinct candidate names: every name in `extra` (the targets' true
    names) plus random names found in the records, then random Faker "First Last" names, up to
    `size` in all (more only if `extra` alone is larger). Found names are full names (two words
    or more), like the targets' truths: a lone "Jones" would be a give-away wrong candidate."""
    rng = random.Random(seed)
    chosen = list(dict.fromkeys(extra))
    seen = set(chosen)
    found = sorted({" ".join(span.text.split()) for record in records for field in FIELDS if field in record
                    for span in pii_find(record[field]) if span.kind == "name" and len(span.text.split()) >= 2})
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
    return {field: fill(target[field], name) for field in FIELDS}


def candidate_logprobs(model, tokenizer, target: dict, candidates: list[str], *,
                       batch_size: int = 32) -> list[float]:
    """Per candidate, the log-prob (nats) of the whole chat-formatted record with the candidate
    in every placeholder. The tokens before the first placeholder are the same for every
    candidate: scoring runs them once (evaluation.scoring), then each candidate's record on."""
    return record_logprobs(model, tokenizer, [_filled(target, name) for name in candidates],
                           max_length=RECONSTRUCTION_MAX_LENGTH, batch_size=batch_size)


def reconstruct_by_likelihood(model, tokenizer, target: dict, candidates: list[str], *,
                              batch_size: int = 32) -> list[str]:
    """Candidates ranked best first by the log-prob of the whole chat-formatted record with the
    candidate in every placeholder (candidate_logprobs)."""
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
    """Greedy continuation of the chat text up to the first placeholder; the first name-like
    words in it (compared with the part of the truth that placeholder hides)."""
    full = record_text(target, tokenizer, end_of_sequence=False)
    prefix = full[: _PLACEHOLDER.search(full).start()].rstrip(" \t")
    input_ids = tokenizer(prefix, add_special_tokens=False, return_tensors="pt")["input_ids"]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model.eval()
    with torch.inference_mode():
        output = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_id)
    return name_in(tokenizer.decode(output[0, input_ids.shape[1]:], skip_special_tokens=True))


def _same(guess: str, truth: str) -> bool:
    return " ".join(guess.split()) == " ".join(truth.split())


def _generation_truth(target: dict) -> str:
    """What the first placeholder hides: the truth, its first or its last word."""
    return fill(target["first_mask"], target["truth"])


def _example(target: dict, top_guess: str, generated: str) -> dict:
    text = target[target["field"]]
    at = _PLACEHOLDER.search(text).start()
    window = text[max(0, at - EXAMPLE_CONTEXT): at + len(target["first_mask"]) + EXAMPLE_CONTEXT]
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
        generated_hits += _same(generated, _generation_truth(target))
        if len(examples) < EXAMPLE_ROWS:
            examples.append(_example(target, ranked[0], generated))
    n = len(targets)
    return {
        "n_targets": n,
        "masking": "every mention of the person (full name, first and last word, lower-case forms), both fields",
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
