"""The filter stage (synthesis.filtering): ROUGE-L, greedy near-duplicate removal, relevance
judging through a next-token-probability interface, and the whole filter with its verdicts."""
import random
import time

import pytest

from synthesis.filtering import (
    DOMAIN_DESCRIPTIONS,
    RELEVANCE_QUESTION,
    FilterConfig,
    Verdict,
    dedup_near_duplicates,
    filter_instructions,
    near_duplicate_matches,
    normalise_instruction,
    relevance_prompts,
    relevance_scores,
    rouge_l,
    tokenize_for_similarity,
    verdict_counts,
)


def lcs_by_dynamic_programming(a: list[str], b: list[str]) -> int:
    row = [0] * (len(b) + 1)
    for token in a:
        diagonal, row[0] = 0, 0
        for j, other in enumerate(b, start=1):
            diagonal, row[j] = row[j], diagonal + 1 if token == other else max(row[j], row[j - 1])
    return row[-1]


def dedup_by_brute_force(texts: list[str], *, threshold: float) -> list[int | None]:
    """The definition, O(n^2): each item against every kept item; the most similar match above
    the threshold, earliest on ties."""
    tokens = [tokenize_for_similarity(text) for text in texts]
    kept, result = [], []
    for i, item in enumerate(tokens):
        best = None
        for k in kept:
            score = rouge_l(item, tokens[k])
            if score > threshold and (best is None or score > best[1]):
                best = (k, score)
        result.append(None if best is None else best[0])
        if best is None:
            kept.append(i)
    return result


def mutated_sentences(rng: random.Random, *, count: int, vocabulary: list[str], length: range) -> list[str]:
    """Sentences where about half are edits (swap, drop, insert, replace words) of earlier ones."""
    sentences: list[list[str]] = []
    for _ in range(count):
        if sentences and rng.random() < 0.5:
            words = list(rng.choice(sentences))
            for _ in range(rng.randint(0, 4)):
                position = rng.randrange(len(words))
                edit = rng.choice(("swap", "drop", "insert", "replace"))
                if edit == "swap":
                    other = rng.randrange(len(words))
                    words[position], words[other] = words[other], words[position]
                elif edit == "drop" and len(words) > 1:
                    del words[position]
                elif edit == "insert":
                    words.insert(position, rng.choice(vocabulary))
                else:
                    words[position] = rng.choice(vocabulary)
        else:
            words = [rng.choice(vocabulary) for _ in range(rng.choice(length))]
        sentences.append(words)
    return [" ".join(words) for words in sentences]


# --- ROUGE-L ---------------------------------------------------------------------------------
def test_rouge_l_is_one_for_identical_and_zero_for_disjoint_token_lists():
    assert rouge_l(["a", "b", "c"], ["a", "b", "c"]) == 1.0
    assert rouge_l(["a", "b", "c"], ["x", "y"]) == 0.0
    assert rouge_l([], ["a"]) == 0.0 and rouge_l([], []) == 0.0


def test_rouge_l_matches_a_hand_computed_example():
    # LCS is "the patient the pill" (4); recall 4/5, precision 4/8, F1 = 2*4/(5+8) = 8/13
    reference = "the patient took the pill".split()
    candidate = "the patient did not take the pill today".split()
    assert rouge_l(reference, candidate) == pytest.approx(8 / 13)
    assert rouge_l(candidate, reference) == pytest.approx(8 / 13)


def test_rouge_l_lcs_agrees_with_dynamic_programming_on_random_pairs():
    rng = random.Random(7)
    for _ in range(500):
        a = [rng.choice("abcdef") for _ in range(rng.randint(1, 90))]  # past 64 tokens: several words
        b = [rng.choice("abcdef") for _ in range(rng.randint(1, 90))]
        expected = 2 * lcs_by_dynamic_programming(a, b) / (len(a) + len(b))
        assert rouge_l(a, b) == pytest.approx(expected)


def test_tokenize_for_similarity_lowercases_and_drops_punctuation():
    assert tokenize_for_similarity("What's the DOSE, for 2 kids?") == ["what's", "the", "dose", "for", "2", "kids"]


# --- near-duplicates -------------------------------------------------------------------------
def test_dedup_keeps_the_first_of_near_duplicates_and_points_later_ones_at_it():
    texts = [
        "What are the common side effects of metformin in older adults?",
        "How is high blood pressure diagnosed in children?",
        "What are the common side effects of metformin in elderly adults?",
        "Explain the difference between a Roth IRA and a traditional IRA.",
        "what are the common side effects of metformin in older adults",
    ]
    assert dedup_near_duplicates(texts, threshold=0.7) == [None, None, 0, None, 0]


def test_dedup_keeps_distinct_items():
    texts = ["How do vaccines train the immune system?", "What does a central bank do?", "Why do bones break?"]
    assert dedup_near_duplicates(texts) == [None, None, None]


def test_dedup_compares_only_against_kept_items():
    # b is a duplicate of a; c is close to b but not to a, so c is kept (b was dropped)
    a = "one two three four five six seven eight nine ten"
    b = "one two three four five six seven eight alpha beta"
    c = "three four five six seven eight alpha beta gamma delta"
    assert rouge_l(tokenize_for_similarity(b), tokenize_for_similarity(c)) > 0.7
    assert dedup_near_duplicates([a, b, c], threshold=0.7) == [None, 0, None]


def test_exact_duplicates_after_normalisation_report_a_rouge_l_of_one():
    texts = ["Is it safe?  Really", "is it SAFE really!", "Why do bones break?"]
    tokens = [tokenize_for_similarity(text) for text in texts]
    assert near_duplicate_matches(tokens, threshold=0.7) == [None, (0, 1.0), None]


def test_a_threshold_of_one_keeps_everything_and_empty_items_are_never_duplicates():
    assert dedup_near_duplicates(["same words here", "same words here"], threshold=1.0) == [None, None]
    assert dedup_near_duplicates(["", "", "!!"], threshold=0.0) == [None, None, None]


def test_dedup_refuses_a_threshold_outside_zero_to_one():
    with pytest.raises(ValueError, match="threshold must be in"):
        dedup_near_duplicates(["a b c"], threshold=-0.1)


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 0.9])
def test_dedup_matches_brute_force_on_random_items_with_shared_vocabulary(threshold):
    rng = random.Random(int(threshold * 100))
    vocabulary = [f"w{n}" for n in range(25)] + ["the", "of", "a"] * 5
    texts = mutated_sentences(rng, count=300, vocabulary=vocabulary, length=range(1, 30))
    texts += rng.sample(texts, 20)  # exact repeats
    expected = dedup_by_brute_force(texts, threshold=threshold)
    assert dedup_near_duplicates(texts, threshold=threshold) == expected
    assert 0 < expected.count(None) < len(texts) or threshold == 0.0


def test_dedup_of_5000_items_finishes_quickly():
    rng = random.Random(3)
    stop_words = "the a of to in and for is what how why does should with on".split()
    content_words = [f"term{n}" for n in range(3000)]
    weights = [1 / (rank + 1) for rank in range(len(content_words))]  # Zipf-like
    vocabulary = stop_words * 150 + rng.choices(content_words, weights=weights, k=3000)
    texts = mutated_sentences(rng, count=5000, vocabulary=vocabulary, length=range(15, 26))
    started = time.perf_counter()
    duplicates = dedup_near_duplicates(texts, threshold=0.7)
    elapsed = time.perf_counter() - started
    print(f"dedup of {len(texts)} items: {elapsed:.2f} s, {duplicates.count(None)} kept")
    assert len(duplicates) == 5000 and 0 < duplicates.count(None) < 5000


# --- relevance -------------------------------------------------------------------------------
def fixed_probabilities(table: dict[str, dict[str, float]], seen: list[str] | None = None):
    """A next_token_probs backend answering from a table keyed by instruction text."""
    def next_token_probs(chats: list[list[dict]], candidates: list[str]) -> list[dict[str, float]]:
        assert candidates == ["yes", "no"]
        answers = []
        for chat in chats:
            instruction = next(text for text in table if f"Instruction: {text}\n" in chat[-1]["content"])
            if seen is not None:
                seen.append(chat[-1]["content"])
            answers.append(table[instruction])
        return answers

    return next_token_probs


def test_relevance_prompts_are_a_system_and_a_user_message_naming_domain_and_instruction():
    (chat,) = relevance_prompts(["How do statins work?"], domain="medical")
    assert [message["role"] for message in chat] == ["system", "user"]
    assert DOMAIN_DESCRIPTIONS["medical"] in chat[0]["content"]
    assert chat[1]["content"] == RELEVANCE_QUESTION.format(domain="medical", instruction="How do statins work?")
    assert "medical professional" in chat[1]["content"] and "yes or no" in chat[1]["content"]


def test_relevance_prompts_refuse_an_unknown_domain():
    with pytest.raises(ValueError, match="unknown domain 'law'"):
        relevance_prompts(["Is this legal?"], domain="law")


def test_relevance_scores_are_yes_over_yes_plus_no_and_undecided_when_neither():
    table = {
        "a": {"yes": 0.6, "no": 0.2},
        "b": {"yes": 0.01, "no": 0.03},
        "c": {"yes": 1e-12, "no": 0.0},
        "d": {},
    }
    scores = relevance_scores(list(table), domain="finance", next_token_probs=fixed_probabilities(table))
    assert scores == pytest.approx([0.75, 0.25, 0.5, 0.5])


def test_relevance_scores_of_no_instructions_do_not_call_the_model():
    def never_called(chats, candidates):
        raise AssertionError("called")

    assert relevance_scores([], domain="medical", next_token_probs=never_called) == []


def test_relevance_scores_refuse_a_backend_answering_the_wrong_number_of_prompts():
    with pytest.raises(ValueError, match="1 results for 2 prompts"):
        relevance_scores(["x", "y"], domain="medical", next_token_probs=lambda chats, c: [{"yes": 1.0}])


# --- the whole filter ------------------------------------------------------------------------
@pytest.mark.parametrize("raw, expected", [
    ('1. "Question: Why do we sneeze?"', "Why do we sneeze?"),
    ("  - What   is   a bond?  ", "What is a bond?"),
    ("Instruction 3: List three antacids.", "List three antacids."),
    ("(2) “How is insulin stored?”", "How is insulin stored?"),
    ("1.5 mg of what drug?", "1.5 mg of what drug?"),
    ("Task-based budgeting explained", "Task-based budgeting explained"),
])
def test_normalise_instruction_strips_markers_quotes_and_whitespace(raw, expected):
    assert normalise_instruction(raw) == expected


def test_filter_instructions_gives_every_reason_in_input_order_and_never_sends_pii_onward():
    instructions = [
        "1. What are the first-line treatments for type 2 diabetes in adults?",  # kept
        "ok",  # too short
        "Can Dr. Sarah Johnson see me, or call 555-123-4567?",  # pii: name and phone
        "- What are the first line treatments for type 2 diabetes in adults",  # exact duplicate of 0
        "Who won the football world cup and where was the final played?",  # not relevant
        '"How should a patient with asthma use a spacer device?"',  # kept
        "What are the first-line treatments for type 2 diabetes in older adults?",  # near duplicate of 0
        "... 123 456 ???",  # no letters
        "Email jane.doe@example.com the dosing chart for amoxicillin",  # pii: email
        "Which vaccines are recommended after March 3, 2024 for adults?",  # a date alone is kept
        "   ",  # empty
    ]
    table = {
        "What are the first-line treatments for type 2 diabetes in adults?": {"yes": 0.9, "no": 0.1},
        "Who won the football world cup and where was the final played?": {"yes": 0.02, "no": 0.9},
        "How should a patient with asthma use a spacer device?": {"yes": 0.7, "no": 0.2},
        "Which vaccines are recommended after March 3, 2024 for adults?": {"yes": 0.8, "no": 0.2},
    }
    calls, seen, emitted = [], [], []
    backend = fixed_probabilities(table, seen)

    def next_token_probs(chats, candidates):
        calls.append(len(chats))
        return backend(chats, candidates)

    verdicts = filter_instructions(
        instructions, config=FilterConfig(), domain="medical", next_token_probs=next_token_probs,
        on_verdict=emitted.append,
    )

    assert [v.index for v in verdicts] == list(range(len(instructions)))
    assert emitted == verdicts
    assert [v.reason for v in verdicts] == [
        None, "empty_or_malformed", "pii", "duplicate", "not_relevant", None, "duplicate",
        "empty_or_malformed", "pii", None, "empty_or_malformed",
    ]
    assert verdicts[0] == Verdict(index=0, text=list(table)[0], kept=True, reason=None, detail={"relevance": 0.9})
    assert verdicts[5].text == "How should a patient with asthma use a spacer device?"
    assert verdicts[2].detail == {"kinds": ["name", "phone"], "spans": ["Sarah Johnson", "555-123-4567"]}
    assert verdicts[8].detail == {"kinds": ["email"], "spans": ["jane.doe@example.com"]}
    assert verdicts[3].detail == {"duplicate_of": 0, "rouge_l": 1.0}
    assert verdicts[6].detail["duplicate_of"] == 0 and 0.7 < verdicts[6].detail["rouge_l"] < 1.0
    assert verdicts[4].detail["relevance"] == pytest.approx(0.02 / 0.92)
    assert verdict_counts(verdicts) == {"kept": 3, "empty_or_malformed": 3, "pii": 2, "duplicate": 2, "not_relevant": 1,
                                       "pii_masked": 0}

    assert calls == [4]  # one batched call, survivors only
    assert len(seen) == 4 and all(f"Instruction: {text}\n" in question for text, question in zip(table, seen))
    for leaked in ("Sarah", "555-123-4567", "jane.doe@example.com"):
        assert not any(leaked in question for question in seen)


def test_filter_instructions_does_not_call_the_model_when_nothing_survives():
    def never_called(chats, candidates):
        raise AssertionError("called")

    verdicts = filter_instructions(["", "Call me at 555-123-4567 please"], config=FilterConfig(), domain="finance",
                                   next_token_probs=never_called)
    assert [v.reason for v in verdicts] == ["empty_or_malformed", "pii"]


def test_filter_instructions_drops_only_the_configured_pii_kinds():
    text = "Mr. Smith asks what a reasonable mortgage rate is today"
    probabilities = fixed_probabilities({text: {"yes": 1.0, "no": 0.0}})
    dropped = filter_instructions([text], config=FilterConfig(), domain="finance", next_token_probs=probabilities)
    allowed = filter_instructions([text], config=FilterConfig(drop_pii_kinds=("email",)), domain="finance",
                                  next_token_probs=probabilities)
    assert dropped[0].reason == "pii" and allowed[0].kept


def test_masking_replaces_the_pii_by_its_kind_and_sends_only_the_masked_text_onward():
    instructions = ["Hello doctor, my name is Ysolde Crumpton and my MRN is 10761203. My knee is stiff, what should I do?",
                    "Hello doctor, my name is Tarquin Vandermeer and my knee is stiff, what should I do?",
                    "Call me at 555-123-4567 about my rash please"]
    seen = []

    def next_token_probs(chats, candidates):
        seen.extend(chat[-1]["content"] for chat in chats)
        return [{"yes": 0.9, "no": 0.1} for _ in chats]

    verdicts = filter_instructions(instructions, config=FilterConfig(pii_action="mask", dedup_threshold=0.95),
                                   domain="medical", next_token_probs=next_token_probs)

    assert all(v.kept for v in verdicts), [v.reason for v in verdicts]
    assert verdicts[0].text == "Hello doctor, my name is [NAME] and my MRN is [ID]. My knee is stiff, what should I do?"
    assert verdicts[0].detail == {"relevance": 0.9, "masked": ["id", "name"]}
    assert verdicts[2].text == "Call me at [PHONE] about my rash please"
    for leaked in ("Ysolde", "Crumpton", "10761203", "Tarquin", "Vandermeer", "555-123-4567"):
        assert not any(leaked in question for question in seen)
    assert verdict_counts(verdicts)["pii_masked"] == 3
    # the masked texts are what the duplicate check compares: two messages that differed only in
    # the name are duplicates once masked
    other = instructions[1].replace("Tarquin Vandermeer", "Saoirse Quarrington")
    config = FilterConfig(pii_action="mask", dedup_threshold=0.95)
    again = filter_instructions([instructions[1], other], config=config, domain="medical",
                                next_token_probs=next_token_probs)
    assert [v.reason for v in again] == [None, "duplicate"]
    assert rouge_l(tokenize_for_similarity(instructions[1]), tokenize_for_similarity(other)) < 0.95
    with pytest.raises(ValueError, match="pii_action must be one of drop, mask"):
        FilterConfig(pii_action="keep")


def test_filter_instructions_applies_word_limits_and_the_relevance_threshold():
    texts = ["Define inflation", "Define inflation and deflation with examples please"]
    probabilities = fixed_probabilities({t: {"yes": 0.6, "no": 0.4} for t in texts})
    config = FilterConfig(min_words=3, max_words=5, relevance_threshold=0.7)
    verdicts = filter_instructions(texts, config=config, domain="finance", next_token_probs=probabilities)
    assert [v.reason for v in verdicts] == ["empty_or_malformed", "empty_or_malformed"]
    config = FilterConfig(min_words=2, max_words=10, relevance_threshold=0.7)
    verdicts = filter_instructions(texts, config=config, domain="finance", next_token_probs=probabilities)
    assert [v.reason for v in verdicts] == ["not_relevant", "not_relevant"]


def test_verdict_counts_has_every_key_when_there_are_no_verdicts():
    assert verdict_counts([]) == {"kept": 0, "empty_or_malformed": 0, "pii": 0, "duplicate": 0, "not_relevant": 0,
                                  "pii_masked": 0}


@pytest.mark.parametrize("arguments, message", [
    ({"dedup_threshold": 1.5}, "dedup_threshold"),
    ({"dedup_threshold": -0.1}, "dedup_threshold"),
    ({"relevance_threshold": float("nan")}, "relevance_threshold"),
    ({"relevance_threshold": "0.5"}, "relevance_threshold"),
    ({"drop_pii_kinds": ("name", "address")}, "unknown PII kinds"),
    ({"drop_pii_kinds": "name"}, "not the string"),
    ({"min_words": 0}, "min_words"),
    ({"min_words": 10, "max_words": 5}, "below min_words"),
])
def test_filter_config_refuses_invalid_values(arguments, message):
    with pytest.raises(ValueError, match=message):
        FilterConfig(**arguments)


def test_filter_config_accepts_boundaries_and_stores_kinds_as_a_tuple():
    config = FilterConfig(dedup_threshold=0.0, relevance_threshold=1.0, drop_pii_kinds=["date"])
    assert config.drop_pii_kinds == ("date",)
    with pytest.raises(AttributeError):
        config.min_words = 5
