"""The filter stage: which raw synthetic instructions go on to the professional model.

The base model with the client's DP adapter samples raw instructions; many are malformed, repeat
each other, leak personal information the adapter memorised, or drift out of the domain. Each
instruction gets one Verdict, decided by the first check it fails, in this order:

1. normalise (strip, collapse whitespace, drop surrounding quotes and list markers);
2. "empty_or_malformed": too few or too many words, or no letters at all;
3. "pii": personal information of a dropped kind (privacy.pii). Checked before anything is sent
   to the professional model, so PII never travels onward. With pii_action "mask" the spans are
   replaced by their kind ("[NAME]") and the instruction goes on: an adapter that learned how
   patients write greets with a name in nearly every message, and dropping them all would leave
   nothing (the detail names the masked kinds);
4. "duplicate": ROUGE-L F1 above a threshold against an instruction kept earlier (greedy, in
   input order, as in Self-Instruct);
5. "not_relevant": the professional model, asked yes or no, judges it outside the domain.

Relevance is model-agnostic: the caller passes `next_token_probs`, which a generation backend
provides; this module only builds the prompts and reads p(yes) and p(no).
"""
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from privacy.pii import KINDS as PII_KINDS
from privacy.pii import pii_find_many, pii_redact

NextTokenProbs = Callable[[list[list[dict]], list[str]], list[dict[str, float]]]

REASONS = ("empty_or_malformed", "pii", "duplicate", "not_relevant")
PII_ACTIONS = ("drop", "mask")
RELEVANCE_ANSWERS = ["yes", "no"]
UNDECIDED_RELEVANCE = 0.5  # the score when the model puts (almost) no mass on either answer
_NEGLIGIBLE_PROBABILITY = 1e-9

DOMAIN_DESCRIPTIONS = {
    "medical": (
        "medicine and health care: symptoms, diagnoses, tests, treatments, medications and their "
        "side effects, prevention, and caring for patients"
    ),
    "finance": (
        "finance and economics: markets, investing, banking, loans, accounting, taxes, insurance, "
        "corporate finance, and personal money management"
    ),
}

RELEVANCE_SYSTEM_PROMPT = (
    "You are an experienced {domain} professional reviewing questions for a {domain} assistant. "
    "The {domain} domain covers {domain_description}. "
    "Answer every request with a single lowercase word: yes or no."
)
RELEVANCE_QUESTION = (
    "Is the following instruction a question or task that a {domain} professional would be asked?\n\n"
    "Instruction: {instruction}\n\n"
    "Answer only yes or no."
)


# --- ROUGE-L ---------------------------------------------------------------------------------
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


def tokenize_for_similarity(text: str) -> list[str]:
    """Lowercase word tokens (letters and digits; "what's" is one token), punctuation dropped."""
    return _WORD.findall(text.lower())


def _match_masks(tokens: list[str]) -> dict[str, int]:
    """For each token, a bit mask of its positions in `tokens` (bit i set = tokens[i])."""
    masks: dict[str, int] = defaultdict(int)
    for position, token in enumerate(tokens):
        masks[token] |= 1 << position
    return masks


def _lcs_length(a_masks: dict[str, int], a_length: int, b_tokens: list[str]) -> int:
    """Length of the longest common subsequence, bit-parallel (Allison and Dix, 1986): one
    row of the DP table is a machine word per 64 tokens, updated with an add and a few ands."""
    full = (1 << a_length) - 1
    row = full
    for token in b_tokens:
        match = a_masks.get(token)
        if match:
            carry = row & match
            row = ((row + carry) | (row - carry)) & full
    return a_length - row.bit_count()


def rouge_l(a_tokens: list[str], b_tokens: list[str]) -> float:
    """ROUGE-L F1 with beta = 1: 2 * LCS / (len(a) + len(b)), in [0, 1]; 0 when either is empty."""
    if not a_tokens or not b_tokens:
        return 0.0
    lcs = _lcs_length(_match_masks(a_tokens), len(a_tokens), b_tokens)
    return 2 * lcs / (len(a_tokens) + len(b_tokens))


# --- near-duplicates -------------------------------------------------------------------------
def _occurrence_ids(token_lists: list[list[str]]) -> list[list[int]]:
    """Each item as ids of its token occurrences: "the" twice is ("the", 0) and ("the", 1), so
    the number of ids two items share is exactly the size of their multiset intersection."""
    ids: dict[tuple[str, int], int] = {}
    return [
        [ids.setdefault((token, n), len(ids)) for token, count in Counter(tokens).items() for n in range(count)]
        for tokens in token_lists
    ]


def near_duplicate_matches(token_lists: list[list[str]], *, threshold: float) -> list[tuple[int, float] | None]:
    """Greedy dedup in input order: for each item, None if kept, else (index of the kept item
    it duplicates, ROUGE-L F1) where F1 > threshold. Among several such kept items, the most
    similar one, earliest on ties. Empty items are always kept (F1 is 0); threshold 1.0 keeps all.

    Fast for thousands of items: an inverted index of token occurrences gives, in one numpy
    bincount, the multiset overlap with every kept item, hence the bound F1 <= 2*overlap/(m+n)
    (the LCS never exceeds the overlap). The exact bit-parallel LCS runs only for kept items
    whose bound exceeds the threshold, best bound first, while the bound can still win."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
    occurrences = _occurrence_ids(token_lists)
    postings: dict[int, list[int]] = defaultdict(list)
    for i, item in enumerate(occurrences):
        for occurrence in item:
            postings[occurrence].append(i)
    postings_arrays = {occurrence: np.array(items, dtype=np.int64) for occurrence, items in postings.items()}
    lengths = np.array([len(tokens) for tokens in token_lists], dtype=np.int64)
    kept = np.zeros(len(token_lists), dtype=bool)
    kept_by_tokens: dict[tuple[str, ...], int] = {}
    matches: list[tuple[int, float] | None] = []
    for i, tokens in enumerate(token_lists):
        key = tuple(tokens)
        if tokens and threshold < 1.0 and key in kept_by_tokens:
            matches.append((kept_by_tokens[key], 1.0))  # an exact copy: F1 = 1, the best possible
            continue
        match = None
        if tokens:
            # postings include items not yet seen; the `kept` mask leaves only earlier kept ones
            overlap = np.bincount(
                np.concatenate([postings_arrays[occurrence] for occurrence in occurrences[i]]),
                minlength=len(token_lists),
            )
            candidates = np.flatnonzero(kept & (overlap > 0))
            bounds = 2 * overlap[candidates] / (len(tokens) + lengths[candidates])
            above = bounds > threshold
            match = _best_match(tokens, candidates[above].tolist(), bounds[above].tolist(), token_lists,
                                threshold=threshold)
        matches.append(match)
        if match is None:
            kept[i] = True
            kept_by_tokens.setdefault(key, i)
    return matches


def _best_match(tokens, candidates, bounds, token_lists, *, threshold) -> tuple[int, float] | None:
    """The most similar candidate with ROUGE-L F1 > threshold, as (index, F1), or None.
    `bounds` are upper bounds on each candidate's F1."""
    if not candidates:
        return None
    best: tuple[int, float] | None = None
    masks = _match_masks(tokens)
    for bound, k in sorted(zip(bounds, candidates), key=lambda pair: (-pair[0], pair[1])):
        if best is not None and bound < best[1]:
            break  # no remaining candidate can beat (or tie) the best match
        score = 2 * _lcs_length(masks, len(tokens), token_lists[k]) / (len(tokens) + len(token_lists[k]))
        if score > threshold and (best is None or score > best[1] or (score == best[1] and k < best[0])):
            best = (k, score)
    return best


def dedup_near_duplicates(texts: list[str], *, threshold: float = 0.7) -> list[int | None]:
    """For each text, None if kept, else the index of the kept text it near-duplicates (ROUGE-L
    F1 over `tokenize_for_similarity` tokens > threshold); greedy in input order."""
    matches = near_duplicate_matches([tokenize_for_similarity(text) for text in texts], threshold=threshold)
    return [None if match is None else match[0] for match in matches]


# --- relevance -------------------------------------------------------------------------------
def _domain_description(domain: str) -> str:
    if domain not in DOMAIN_DESCRIPTIONS:
        raise ValueError(f"unknown domain {domain!r}; known domains: {', '.join(sorted(DOMAIN_DESCRIPTIONS))}")
    return DOMAIN_DESCRIPTIONS[domain]


def relevance_prompts(instructions: list[str], *, domain: str) -> list[list[dict]]:
    """One chat (system message, then user question) per instruction, asking yes or no."""
    system = RELEVANCE_SYSTEM_PROMPT.format(domain=domain, domain_description=_domain_description(domain))
    return [
        [
            {"role": "system", "content": system},
            {"role": "user", "content": RELEVANCE_QUESTION.format(domain=domain, instruction=instruction)},
        ]
        for instruction in instructions
    ]


def relevance_scores(instructions: list[str], *, domain: str, next_token_probs: NextTokenProbs) -> list[float]:
    """For each instruction, p(yes) / (p(yes) + p(no)) from the professional model's next-token
    probabilities, in [0, 1]. When both probabilities are below 1e-9 the model said neither, and
    the score is 0.5 (undecided). One batched call to `next_token_probs`; none for no instructions."""
    if not instructions:
        return []
    answers = next_token_probs(relevance_prompts(instructions, domain=domain), list(RELEVANCE_ANSWERS))
    if len(answers) != len(instructions):
        raise ValueError(f"next_token_probs returned {len(answers)} results for {len(instructions)} prompts")
    scores = []
    for probabilities in answers:
        p_yes, p_no = float(probabilities.get("yes", 0.0)), float(probabilities.get("no", 0.0))
        if p_yes < _NEGLIGIBLE_PROBABILITY and p_no < _NEGLIGIBLE_PROBABILITY:
            scores.append(UNDECIDED_RELEVANCE)
        else:
            scores.append(p_yes / (p_yes + p_no))
    return scores


# --- the filter ------------------------------------------------------------------------------
@dataclass(frozen=True)
class FilterConfig:
    """Thresholds of the filter stage. ROUGE-L F1 above `dedup_threshold` is a duplicate; a
    relevance score below `relevance_threshold` is off-domain; PII of `drop_pii_kinds` drops an
    instruction, or with pii_action "mask" is replaced by its kind in brackets (dates are kept by
    default: "after March 2020" is rarely personal)."""
    dedup_threshold: float = 0.7
    relevance_threshold: float = 0.5
    drop_pii_kinds: tuple[str, ...] = ("name", "email", "phone", "id")
    pii_action: str = "drop"
    min_words: int = 3
    max_words: int = 200

    def __post_init__(self):
        for name in ("dedup_threshold", "relevance_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
        if self.pii_action not in PII_ACTIONS:
            raise ValueError(f"pii_action must be one of {', '.join(PII_ACTIONS)}, got {self.pii_action!r}")
        if isinstance(self.drop_pii_kinds, str):
            raise ValueError(f"drop_pii_kinds must be a sequence of kinds, not the string {self.drop_pii_kinds!r}")
        object.__setattr__(self, "drop_pii_kinds", tuple(self.drop_pii_kinds))
        unknown = [kind for kind in self.drop_pii_kinds if kind not in PII_KINDS]
        if unknown:
            raise ValueError(f"unknown PII kinds {unknown}; known kinds: {', '.join(PII_KINDS)}")
        for name in ("min_words", "max_words"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.max_words < self.min_words:
            raise ValueError(f"max_words ({self.max_words}) is below min_words ({self.min_words})")


@dataclass(frozen=True)
class Verdict:
    """The filter's decision on one instruction. `text` is the normalised instruction (what a
    kept one is sent onward as); `reason` is None when kept, else one of REASONS; `detail` is
    plain data: {"relevance": score} when kept or not relevant, {"duplicate_of": index,
    "rouge_l": F1} for duplicates, {"kinds": [...], "spans": [...]} for PII."""
    index: int
    text: str
    kept: bool
    reason: str | None
    detail: dict = field(default_factory=dict)


# "1. ", "(2) ", "3: ", "- ", "* ", "• " (a space must follow, so "1.5 mg" and "-5" stay), and
# labels: "Instruction:", "Question 3:", "Task #2:".
_LIST_MARKER = re.compile(
    r"^(?:(?:\(?\d{1,3}[.):]|[-*•–—])\s+|(?:instruction|question|task|prompt|query)\s*(?:#?\d{1,3})?\s*:\s*)",
    re.IGNORECASE,
)
_QUOTE_PAIRS = {'"': '"', "'": "'", "“": "”", "‘": "’", "`": "`", "«": "»"}


def normalise_instruction(text: str) -> str:
    """The instruction without list markers ("1.", "- ", "Instruction:"), surrounding quotes and
    extra whitespace, repeated until nothing changes ('1. "Question: Why?"' -> 'Why?')."""
    text = " ".join(str(text).split())
    while True:
        before = text
        text = _LIST_MARKER.sub("", text, count=1).strip()
        if len(text) >= 2 and _QUOTE_PAIRS.get(text[0]) == text[-1]:
            text = text[1:-1].strip()
        if text == before:
            return text


def _is_malformed(text: str, config: FilterConfig) -> bool:
    return not config.min_words <= len(text.split()) <= config.max_words or not any(c.isalpha() for c in text)


def filter_instructions(
    instructions: list[str],
    *,
    config: FilterConfig,
    domain: str,
    next_token_probs: NextTokenProbs,
    on_verdict: Callable[[Verdict], None] | None = None,
) -> list[Verdict]:
    """One Verdict per instruction, in input order (see the module docstring for the checks).
    Only instructions that pass the malformed, PII and duplicate checks reach `next_token_probs`,
    in a single batched call. `on_verdict` is called once per verdict, in input order, once all
    are decided."""
    _domain_description(domain)  # an unknown domain fails before any work
    texts = [normalise_instruction(text) if isinstance(text, str) else "" for text in instructions]
    verdicts: dict[int, Verdict] = {}

    def reject(i: int, reason: str, detail: dict) -> None:
        verdicts[i] = Verdict(index=i, text=texts[i], kept=False, reason=reason, detail=detail)

    for i, text in enumerate(texts):
        if _is_malformed(text, config):
            reject(i, "empty_or_malformed", {})
    well_formed = [i for i in range(len(texts)) if i not in verdicts]
    masked: dict[int, list[str]] = {}
    for i, found in zip(well_formed, pii_find_many(texts[i] for i in well_formed)):  # one batched NER pass
        spans = [span for span in found if span.kind in config.drop_pii_kinds]
        if spans and config.pii_action == "mask":
            texts[i], masked[i] = pii_redact(texts[i], spans=spans), sorted({span.kind for span in spans})
        elif spans:
            reject(i, "pii", {"kinds": sorted({span.kind for span in spans}), "spans": [span.text for span in spans]})

    survivors = [i for i in range(len(texts)) if i not in verdicts]
    matches = near_duplicate_matches(
        [tokenize_for_similarity(texts[i]) for i in survivors], threshold=config.dedup_threshold
    )
    for i, match in zip(survivors, matches):
        if match is not None:
            reject(i, "duplicate", {"duplicate_of": survivors[match[0]], "rouge_l": match[1]})

    judged = [i for i in survivors if i not in verdicts]
    scores = relevance_scores([texts[i] for i in judged], domain=domain, next_token_probs=next_token_probs)
    for i, score in zip(judged, scores):
        if score >= config.relevance_threshold:
            detail = {"relevance": score, **({"masked": masked[i]} if i in masked else {})}
            verdicts[i] = Verdict(index=i, text=texts[i], kept=True, reason=None, detail=detail)
        else:
            reject(i, "not_relevant", {"relevance": score})

    ordered = [verdicts[i] for i in range(len(texts))]
    if on_verdict is not None:
        for verdict in ordered:
            on_verdict(verdict)
    return ordered


def verdict_counts(verdicts: list[Verdict]) -> dict[str, int]:
    """How many verdicts were kept and how many failed each check, and how many kept ones had
    PII masked ("pii_masked"); every key always present."""
    counts = dict.fromkeys(("kept", *REASONS, "pii_masked"), 0)
    for verdict in verdicts:
        counts["kept" if verdict.kept else verdict.reason] += 1
        counts["pii_masked"] += bool(verdict.detail.get("masked"))
    return counts
