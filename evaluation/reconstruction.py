"""The name reconstruction attack, KnowledgeSG's headline privacy metric.

Take a training record, hide one person behind placeholders, and ask the model to put the name
back:
  - by likelihood: fill every candidate name in, score the whole record in the chat format the
    model was trained on (user = instruction, assistant = response), rank by log-prob;
  - by generation: give the model the chat text up to the first placeholder, decode greedily,
    take the first name-like words.
EVERY mention of the person is masked, in both fields: the full name ("[NAME]"), its first and
last words on their own ("[FIRST]", "[LAST]": "Dear Ms. [LAST]", "Thanks, [FIRST]"), the words
after the first ("[SURNAME]": "Mr [SURNAME]" for "van Luyssel"), those run together and the forms
without accents, as email addresses write them ("[first].[surname_joined]@mail.com" for
"jasmijn.vanluyssel@", "[first_ascii].[last_ascii]@" for Róbert Székely's "robert.szekely@"),
each in lower case too. A candidate is filled into every placeholder at once. With any mention left in the text the attack would measure copying from context (a model
that never saw the record reads the name off its signature), not memorisation. A model that did
not memorise its data does no better than a random pick from the candidates (1 / |candidates|
top-1). Other people in the record (the doctor) stay: they are not the target.
"""
import random
import re
import unicodedata
from collections import Counter

import torch

from privacy.pii import pii_find, pii_find_many
from privacy.dp.train import IGNORE_INDEX
from synthesis.lm.chat import record_prompt_response, record_text

from .intervals import wilson_interval
from .scoring import examples_logprobs, record_logprobs
from .sequential import look_sizes, rate_decision, sample_until_decided

MASK = "[NAME]"
DETECTOR_SOURCE = "pii_detector"      # a target whose person only the PII detector named
FIELDS = ("instruction", "response")  # in chat order
RECONSTRUCTION_MAX_LENGTH = 512       # tokens; long enough for a whole demo record
EXAMPLE_ROWS = 5
POWER_MULTIPLE = 5                    # the leak, in multiples of chance, the sizes should be able to show
EXAMPLE_CONTEXT = 120                 # characters of text kept each side of the first placeholder
_NAME_LIKE = re.compile(r"[A-Z][A-Za-z'\-]+(?:[ \t]+[A-Z][A-Za-z'\-]+){0,2}")
# The parts of a name a record can spell, simplest first (where two give the same text, the first
# names it): the whole, its first and last words, the words after the first ("van Luyssel"), those
# run together ("vanluyssel", as in an email address), and each without its accents ("Szekely" for
# "Székely", as email addresses and old systems write them).
_PARTS = ("name", "first", "last", "surname", "surname_joined", "name_joined")
PART_KEYS = _PARTS + tuple(f"{part}_ascii" for part in _PARTS)
# placeholder -> (part of the name, lower-cased?): "[FIRST]", "[first]", "[SURNAME_JOINED_ASCII]", ...
PLACEHOLDERS = {f"[{key.upper()}]": (key, False) for key in PART_KEYS} | {f"[{key}]": (key, True) for key in PART_KEYS}
_PLACEHOLDER = re.compile("|".join(re.escape(p) for p in sorted(PLACEHOLDERS, key=len, reverse=True)))


def _ascii(text: str) -> str:
    """text without its accents ("Róbert Székely" -> "Robert Szekely"; letters with no ASCII form
    kept as they are)."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def name_parts(name: str) -> dict[str, str]:
    """Every part of a full name a record may spell (PART_KEYS): "name", "first", "last",
    "surname" (the words after the first), "surname_joined" and "name_joined" (run together
    without spaces or hyphens), and each one's "_ascii" form (without accents)."""
    words = name.split()
    surname = " ".join(words[1:]) or words[0]
    parts = {"name": " ".join(words), "first": words[0], "last": words[-1], "surname": surname,
             "surname_joined": re.sub(r"[\s\-]", "", surname), "name_joined": re.sub(r"[\s\-]", "", "".join(words))}
    return parts | {f"{key}_ascii": _ascii(parts[key]) for key in _PARTS}


def _mention_pattern(parts: dict[str, str]) -> re.Pattern:
    """Whole-word mentions of the person: any part of the name (name_parts), any case."""
    alternatives = sorted(set(parts.values()), key=len, reverse=True)
    # not inside a word: no letter (of any script) either side, none joined by an apostrophe or a
    # hyphen ("O'Lee", "Lee-Smith" are not Lee); a possessive "'s" after it is a mention ("Ann's")
    return re.compile(r"(?<![^\W\d_])(?<!['\u2019\-])(" + "|".join(re.escape(a) for a in alternatives)
                      + r")(?![^\W\d_]|-[^\W\d_]|['\u2019](?!s(?![^\W\d_]))[^\W\d_])", re.IGNORECASE)


def _mask_person(text: str, parts: dict[str, str]) -> str:
    """text with every whole-word mention of the person (any part of the name, with or without
    accents, any case) replaced by its placeholder."""
    def placeholder(match: re.Match) -> str:
        found = match.group()
        part = next(key for key in PART_KEYS if found.lower() == parts[key].lower())
        lower = found == found.lower() and found != parts[part]
        return f"[{part}]" if lower else f"[{part.upper()}]"

    return _mention_pattern(parts).sub(placeholder, text)


def fill(text: str, name: str) -> str:
    """A masked text with `name` (its parts, its lower-case forms) in every placeholder."""
    parts = name_parts(name)

    def part(match: re.Match) -> str:
        key, lower = PLACEHOLDERS[match.group()]
        return parts[key].lower() if lower else parts[key]

    return _PLACEHOLDER.sub(part, text)


def _mentioned(record: dict, value: str) -> bool:
    """Whether `value` occurs as whole words (any case) in the record's instruction or response."""
    pattern = re.compile(r"(?<![A-Za-z0-9'\-])" + re.escape(value) + r"(?![A-Za-z0-9'\-])", re.IGNORECASE)
    return any(pattern.search(record.get(field) or "") for field in FIELDS)


def _record_truth(record: dict, identifying_fields: tuple[str, ...]) -> tuple[str | None, str | None]:
    """(who the record is about, where that came from): the first identifying field whose value the
    text mentions, else the first full name (two or more words) the PII detector finds."""
    identity = record.get("identity") or {}
    for field in identifying_fields:
        value = " ".join(str(identity.get(field) or "").split())
        if value and _mentioned(record, value):
            return value, field
    full_names = [span.text for field in FIELDS for span in pii_find(record[field])
                  if span.kind == "name" and len(span.text.split()) >= 2]
    return (" ".join(full_names[0].split()), DETECTOR_SOURCE) if full_names else (None, None)


def _spread_over_units(records: list[dict]) -> list[int]:
    """Record positions in the order the attack takes them: each person's first record (records
    with a "unit"), then each one's second, and so on, so that `limit` targets are as many
    different people as there are: the rate's interval counts targets as independent."""
    seen: dict[str, int] = {}
    keyed = []
    for index, record in enumerate(records):
        unit = record.get("unit", f"record-{index}")
        keyed.append((seen.get(unit, 0), index))
        seen[unit] = seen.get(unit, 0) + 1
    return [index for _, index in sorted(keyed)]


def reconstruction_targets(records: list[dict], *, limit: int, identifying_fields: tuple[str, ...] = ()) -> list[dict]:
    """Up to `limit` records that mention their person, each with EVERY mention of that person
    masked in both fields. The person comes from the record's identifying fields (the uploader
    marked them: privacy.datasets) where the text mentions the value, else from the PII detector
    (a full name). {"instruction", "response", "truth", "source", "index", "field", "first_mask"}
    Each person's first record comes before anyone's second (_spread_over_units).
    ("source" is the identifying field or DETECTOR_SOURCE, "field" holds the first placeholder in
    chat order, "first_mask" is that placeholder, "index" the record's position in `records`)."""
    targets = []
    for index in _spread_over_units(records):
        record = records[index]
        if len(targets) >= limit:
            break
        truth, source = _record_truth(record, tuple(identifying_fields))
        if truth is None:
            continue
        parts = name_parts(truth)
        masked = {field: _mask_person(record[field], parts) for field in FIELDS}
        field = next((field for field in FIELDS if _PLACEHOLDER.search(masked[field])), None)
        if field is None:
            continue
        targets.append({**masked, "truth": truth, "source": source, "index": index, "field": field,
                        "first_mask": _PLACEHOLDER.search(masked[field]).group()})
    return targets


def _faker_names() -> tuple[list[str], list[str]]:
    from faker.providers.person.en_US import Provider  # deferred: faker's name lists load only when an attack draws candidates

    return sorted(Provider.first_names), sorted(Provider.last_names)


def _recombination_parts(names: list[str]) -> tuple[list[str], list[str]]:
    """The first and last words of the data's own full names, to build decoys from: a decoy made of
    them is of the same languages and spelling as the true names (en_US Faker names beside
    patients named Saoirse Ní Bhraonáin would give the truths away). Faker's en_US lists only when
    the data has fewer than two names to recombine."""
    full = [name.split() for name in names if len(name.split()) >= 2]
    firsts, lasts = sorted({words[0] for words in full}), sorted({words[-1] for words in full})
    if len(firsts) < 2 or len(lasts) < 2:
        return _faker_names()
    return firsts, lasts


def candidate_names(records: list[dict], *, extra: list[str] = (), size: int = 100, seed: int = 0,
                    identifying_fields: tuple[str, ...] = ()) -> list[str]:
    """A shuffled set of distinct candidate names: every name in `extra` (the targets' true
    names), then other people's values of the identifying fields (the same kind of value as the
    truths: the strongest decoys), then random full names the detector finds in the records, then
    "First Last" names recombined from those names' own first and last words
    (_recombination_parts), up to `size` in all (more only if `extra` alone is larger).
    Found names are full names (two words or more), like the targets' truths: a lone "Jones"
    would be a give-away wrong candidate."""
    rng = random.Random(seed)
    chosen = list(dict.fromkeys(extra))
    seen = set(chosen)
    identities = sorted({" ".join(str((record.get("identity") or {}).get(field) or "").split())
                         for record in records for field in identifying_fields} - {""})
    texts = [record[field] for record in records for field in FIELDS if field in record]
    found = sorted({" ".join(span.text.split()) for spans in pii_find_many(texts)  # one batched scan
                    for span in spans if span.kind == "name" and len(span.text.split()) >= 2})
    rng.shuffle(identities)
    rng.shuffle(found)
    first_names, last_names = _recombination_parts([*chosen, *identities, *found])
    fakes = (f"{rng.choice(first_names)} {rng.choice(last_names)}" for _ in range(100 * size))
    for name in [*identities, *found, *fakes]:
        if len(chosen) >= size:
            break
        if name not in seen:
            seen.add(name)
            chosen.append(name)
    rng.shuffle(chosen)  # no order advantage for the true names when scores tie
    return chosen


def _filled(target: dict, name: str) -> dict:
    return {field: fill(target[field], name) for field in FIELDS}


def _context_example(tokenizer, target: dict, name: str) -> tuple[list[int], list[int]] | None:
    """The whole chat-formatted record with `name` in every placeholder, tokenized as training
    tokenizes (prompt, then response), every token a label except those that spell the name; None
    for a tokenizer without character offsets."""
    pattern = _mention_pattern(name_parts(name))
    ids, labels = [], []
    for text in record_prompt_response(_filled(target, name), tokenizer, end_of_sequence=True):
        try:
            encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        except NotImplementedError:  # a slow (Python) tokenizer gives no offsets
            return None
        spans = [match.span() for match in pattern.finditer(text)]
        for token, (start, end) in zip(encoded["input_ids"], encoded["offset_mapping"]):
            ids.append(token)
            labels.append(IGNORE_INDEX if any(start < stop and end > begin for begin, stop in spans) else token)
    return ids[:RECONSTRUCTION_MAX_LENGTH], labels[:RECONSTRUCTION_MAX_LENGTH]


def candidate_logprobs(model, tokenizer, target: dict, candidates: list[str], *,
                       batch_size: int = 32) -> list[float]:
    """Per candidate, the log-prob (nats) of the rest of the chat-formatted record given the
    candidate in every placeholder: every token except the name's own. How likely a name is in
    itself (short, common, one the model was fine-tuned on) is the same whatever record it is put
    in; what ties it to THIS record (the record number, age, doctor the model memorised with it) is
    in the tokens around it. The tokens before the first placeholder are the same for every
    candidate: scoring runs them once (evaluation.scoring). A tokenizer without offsets scores the
    whole record, name included."""
    examples = [_context_example(tokenizer, target, name) for name in candidates]
    if any(example is None for example in examples):
        return record_logprobs(model, tokenizer, [_filled(target, name) for name in candidates],
                               max_length=RECONSTRUCTION_MAX_LENGTH, batch_size=batch_size)
    return examples_logprobs(model, tokenizer, examples, batch_size=batch_size)


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
                          candidate_set_size: int = 100, seed: int = 0, identifying_fields: tuple[str, ...] = (),
                          candidate_records: list[dict] | None = None, looks: int = 1) -> dict:
    """Rates (fractions of targets) of likelihood top-1 and top-5 and generation exact match, each
    with its count and Wilson interval, against the random-guess rates; where its targets came
    from; up to EXAMPLE_ROWS example rows. Candidates are drawn from `candidate_records` (default:
    the training records). With no target, the rates are None and "problem" says why. Plain data.

    `limit` is a cap: the targets are taken up to it in their fixed order (reconstruction_targets)
    and the candidate set is built once from all of them, then the attack runs in `looks` looks of
    growing size (evaluation.sequential) and stops at the first whose top-1 interval lies above
    chance (a leak) or below POWER_MULTIPLE x chance (no leak of the size the attack is powered
    for). Every interval is at the looks' Bonferroni level (95% over all looks together); "sample"
    says how many targets were attacked and why it stopped. looks = 1 attacks every target."""
    targets = reconstruction_targets(train_records, limit=limit, identifying_fields=identifying_fields)
    candidates = candidate_names(train_records if candidate_records is None else candidate_records,
                                 extra=[t["truth"] for t in targets], size=candidate_set_size, seed=seed,
                                 identifying_fields=identifying_fields)
    chance = 1 / len(candidates) if candidates else None
    hits = {"likelihood_top1": 0, "likelihood_top5": 0, "generation_exact": 0}
    examples, attacked = [], []

    def attack(n: int, confidence: float) -> tuple[int, int]:
        for target in targets[len(attacked):n]:  # a look adds the next targets; those before keep their result
            ranked = reconstruct_by_likelihood(model, tokenizer, target, candidates)
            generated = reconstruct_by_generation(model, tokenizer, target)
            hits["likelihood_top1"] += _same(ranked[0], target["truth"])
            hits["likelihood_top5"] += any(_same(name, target["truth"]) for name in ranked[:5])
            hits["generation_exact"] += _same(generated, _generation_truth(target))
            if len(examples) < EXAMPLE_ROWS:
                examples.append(_example(target, ranked[0], generated))
            attacked.append(target)
        return hits["likelihood_top1"], n

    sample = None
    if targets:
        _, sample = sample_until_decided(
            look_sizes(len(targets), looks), attack,
            lambda figure, confidence: rate_decision(*figure, chance=chance, multiple=POWER_MULTIPLE,
                                                     confidence=confidence),
            unit="targets")
    n = len(attacked)
    confidence = sample["confidence"] if sample else 0.95
    report = {
        "n_targets": n,
        "targets_available": len(targets),
        "sample": sample,
        "targets_from": dict(Counter(target["source"] for target in attacked)),
        "identifying_fields": list(identifying_fields),
        "masking": "every mention of the person (full name, first and last word, lower-case forms), both fields",
        "candidate_set_size": len(candidates),
        "hits": hits,
        "random_guess_rate": 1 / candidate_set_size,
        # every true name is in the set, so a uniform random ranking hits with these rates
        "expected_random_top1_rate": chance,
        "expected_random_top5_rate": min(5, len(candidates)) * chance if candidates else None,
        "examples": examples,
    }
    for name, count in hits.items():
        report[f"{name}_rate"] = count / n if n else None
        report[f"{name}_interval"] = wilson_interval(count, n, confidence=confidence)
    report["power"] = attack_power(n, chance, confidence=confidence)
    if not n:
        report["problem"] = ("no target: no training record mentions its person by an identifying field's value "
                             "or by a full name the PII detector finds, so the attack could not run; name the "
                             "dataset's identifying fields (e.g. patient_name) at registration")
    return report


def attack_power(n: int, chance: float | None, *, multiple: float = POWER_MULTIPLE,
                 confidence: float = 0.95) -> dict:
    """Whether n targets are enough to tell a leak of `multiple` times the chance rate from chance:
    the Wilson interval (at `confidence`) of that rate's expected hits must lie above chance. Plain data."""
    if not n or not chance:
        return {"multiple": multiple, "enough": False, "n": n}
    leak = min(1.0, multiple * chance)
    interval = wilson_interval(round(leak * n), n, confidence=confidence)
    return {"multiple": multiple, "leak_rate": leak, "n": n, "enough": interval["low"] > chance,
            "leak_interval": interval}
