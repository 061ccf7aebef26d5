"""Utility of the target model: is the model KnowledgeSG trained actually useful?

Four measurements, each a plain function on plain data (records are {"instruction", "response"}
dicts, the format privacy.dp.train trains on):

1. held-out loss and perplexity: the mean response-token cross-entropy (nats) on records the
   model never saw, the value training computes (privacy.dp.train.per_example_loss), through the
   scorer (evaluation.scoring);
2. ROUGE-L against references: the model answers each instruction greedily through a generation
   backend; ROUGE-L F1 (synthesis.filtering.rouge_l) of its answer against the reference answer;
3. pairwise win-rate: the professional model, as judge, reads one question and two answers (the
   target model's and the base model's) and says which is better, "A" or "B", once with each
   answer first; only a preference that survives the swap counts, and a judge whose verdicts
   follow the position gives no win-rate;
4. IFD, Instruction-Following Difficulty (Li et al. 2024, "From Quantity to Quality: Boosting LLM
   Performance with Self-Guided Data Selection for Instruction Tuning"): how much the instruction
   helps the model predict the response. Low IFD: the instruction makes the response easy.

Every mean and rate comes with its sample size and 95% interval (evaluation.intervals), beside it
in the returned dict. No Django here: the evaluation app's services call these functions with
loaded models.
"""
import math
import statistics

import numpy as np

from privacy.dp.train import IGNORE_INDEX, examples_tokenize
from synthesis.filtering import rouge_l, tokenize_for_similarity
from synthesis.lm.generation import SamplingParams


from .intervals import mean_interval, wilson_interval
from .scoring import examples_token_logprobs
from .sequential import consistency_decision, look_sizes, sample_until_decided

ROUGE_EXAMPLES = 5               # examples kept in the ROUGE-L report, the first records in input order
JUDGE_CANDIDATES = ["A", "B"]
# Below this share of items judged the same in both answer orders, the judge's verdicts follow the
# position more than the answers: no win-rate is given (MT-Bench reports about 65% for GPT-4).
JUDGE_MIN_CONSISTENCY = 0.6
_NEGLIGIBLE_PROBABILITY = 1e-9   # p(A) + p(B) below this: the judge answered neither, a tie
IFD_HISTOGRAM_BINS = 20
# IFD histogram range. IFD is a ratio of losses, mostly in (0, 1.5); a fixed range keeps reports
# from different runs comparable. Scores above the top edge are counted in the last bin.
IFD_HISTOGRAM_RANGE = (0.0, 2.0)

JUDGE_SYSTEM_PROMPT = (
    "You are an impartial expert judge. You compare two answers to the same question and decide "
    "which one is more helpful, correct and relevant to the question. Do not let the order of the "
    "answers or their length influence you. Reply with a single capital letter: A or B."
)
JUDGE_QUESTION = (
    "Question:\n{instruction}\n\n"
    "Answer A:\n{answer_a}\n\n"
    "Answer B:\n{answer_b}\n\n"
    "Which answer is better? Answer with A or B only."
)


# --- 1. held-out loss and perplexity ---------------------------------------------------------

def _example_losses(model, examples: list[tuple[list[int], list[int]]], *, pad_id: int, batch_size: int) -> list[float]:
    """per_example_loss over tokenized examples (the mean cross-entropy of each example's labelled
    tokens; 0 for one with none), without gradients, in eval mode (dropout off), through the
    scorer (evaluation.scoring: batches of similar length, a prefix every example shares run
    once, logits only where a token is scored); the same values as per_example_loss on a padded
    batch, to float rounding. The model's train/eval mode is restored afterwards."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size!r}")
    rows = examples_token_logprobs(model, examples, pad_id=pad_id, batch_size=batch_size)
    return [-math.fsum(row) / len(row) if row else 0.0 for row in rows]


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def response_losses(model, tokenizer, records: list[dict], *, max_length: int, batch_size: int = 32) -> list[float]:
    """Per record, the mean cross-entropy (nats per token) of its response tokens given its
    chat-formatted instruction: the training loss (privacy.dp.train.per_example_loss on
    examples_tokenize), so held-out numbers compare directly with the training curve."""
    examples = examples_tokenize(records, tokenizer, max_length=max_length)
    return _example_losses(model, examples, pad_id=_pad_id(tokenizer), batch_size=batch_size)


def heldout_loss_report(model, tokenizer, records: list[dict], *, max_length: int) -> dict:
    """{"loss": mean response loss (nats per token), "loss_interval": its 95% t interval over the
    records, "perplexity": exp(loss), "n": records}. The mean is over records (each record counts
    once, whatever its length), as in training."""
    if not records:
        raise ValueError("heldout_loss_report needs at least one held-out record")
    losses = response_losses(model, tokenizer, records, max_length=max_length)
    loss = statistics.fmean(losses)
    return {"loss": loss, "loss_interval": mean_interval(losses, bounds=(0.0, None)), "perplexity": math.exp(loss),
            "n": len(records)}


def heldout_loss_finding(target: dict, base: dict, *, distilled_by: str | None = None,
                         base_model: str | None = None) -> dict:
    """How the evaluated model's held-out loss compares with the untouched base model's, from the
    two heldout_loss_report results: {"comparison": "worse" | "better" | "no_difference" |
    "no_interval", "sentence"}. "worse" (the model's interval entirely above the base's) is never
    left as a bare number: the sentence says so and, for a model fine-tuned on distilled pairs
    (distilled_by: the professional model's spec), why it can be."""
    low, high = target["loss_interval"]["low"], target["loss_interval"]["high"]
    base_low, base_high = base["loss_interval"]["low"], base["loss_interval"]["high"]
    figures = (f"{target['loss']:.3f} [{low:.3f}, {high:.3f}] against the base model's {base['loss']:.3f} "
               f"[{base_low:.3f}, {base_high:.3f}] nats per token, {target['n']} held-out records"
               if None not in (low, high, base_low, base_high) else "")
    if not figures:
        return {"comparison": "no_interval", "sentence": "too few held-out records for an interval: no comparison"}
    if low > base_high:
        sentence = f"Worse than the untouched base model on the real held-out records: {figures}."
        if distilled_by:
            sentence += (" It was fine-tuned on synthetic pairs whose responses the professional model wrote, so it "
                         "learned their style, not the private replies'")
            sentence += (f"; here the professional model is the base model itself ({distilled_by}), so distillation "
                         "brings no knowledge the base lacks: use a stronger professional model."
                         if distilled_by == base_model else ".")
        return {"comparison": "worse", "sentence": sentence}
    if high < base_low:
        return {"comparison": "better", "sentence": f"Better than the untouched base model: {figures}."}
    return {"comparison": "no_difference", "sentence": f"No difference from the base model shown: {figures}."}


# --- 2. ROUGE-L against reference answers ----------------------------------------------------

def greedy_answers(backend, records: list[dict], *, max_new_tokens: int = 96, seed: int = 0) -> list[str]:
    """Each record's instruction answered greedily (temperature 0) through `backend` (a
    generation backend: TransformersBackend or VLLMBackend), input order. The prompt is a single
    user message, the format the adapter trained on."""
    prompts = [[{"role": "user", "content": record["instruction"]}] for record in records]
    sampling = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens, seed=seed)
    return [completion.text for completion in backend.generate(prompts, sampling)]


def rouge_l_report(records: list[dict], answers: list[str]) -> dict:
    """ROUGE-L F1 (word tokens, in [0, 1]) of each answer against its record's reference
    response. Returns {"mean", "mean_interval" (its 95% t interval over the records), "n", "scores"
    (per record, input order), "examples" (the first ROUGE_EXAMPLES records: instruction,
    reference, generated, score)}."""
    if not records:
        raise ValueError("ROUGE-L needs at least one record")
    if len(answers) != len(records):
        raise ValueError(f"{len(answers)} answers for {len(records)} records")
    scores = [
        rouge_l(tokenize_for_similarity(text), tokenize_for_similarity(record["response"]))
        for text, record in zip(answers, records)
    ]
    examples = [
        {"instruction": record["instruction"], "reference": record["response"], "generated": text, "score": score}
        for record, text, score in list(zip(records, answers, scores))[:ROUGE_EXAMPLES]
    ]
    return {"mean": statistics.fmean(scores), "mean_interval": mean_interval(scores, bounds=(0.0, 1.0)),
            "n": len(scores), "scores": scores, "examples": examples}


def rouge_l_against_references(backend, records: list[dict], *, max_new_tokens: int = 96, seed: int = 0) -> dict:
    """rouge_l_report of `backend`'s greedy answers (greedy_answers) to the records."""
    if not records:
        raise ValueError("rouge_l_against_references needs at least one record")
    return rouge_l_report(records, greedy_answers(backend, records, max_new_tokens=max_new_tokens, seed=seed))


# --- 3. pairwise win-rate, judged by the professional model ----------------------------------

def judge_prompt(instruction: str, answer_a: str, answer_b: str) -> list[dict]:
    """The chat prompt asking the judge which of answers A and B to `instruction` is better."""
    return [
        {"role": "system", "content": JUDGE_SYSTEM_PROMPT},
        {"role": "user", "content": JUDGE_QUESTION.format(instruction=instruction, answer_a=answer_a,
                                                          answer_b=answer_b)},
    ]


def judge_choice(p_a: float, p_b: float, *, tie_margin: float) -> str:
    """"A", "B" or "tie" from the judge's probabilities of replying A and B: a tie when the
    relative gap |p(A) - p(B)| / (p(A) + p(B)) is below tie_margin, or when the judge put
    (almost) no probability on either reply."""
    total = p_a + p_b
    if total < _NEGLIGIBLE_PROBABILITY or abs(p_a - p_b) / total < tie_margin:
        return "tie"
    return "A" if p_a > p_b else "B"


def _order_verdict(probs: dict, *, target_position: str, tie_margin: float) -> dict:
    """One order's verdict: the judge's p(A), p(B), its choice, and which answer that names
    ("target", "base" or "tie") given where the target answer was shown."""
    p_a, p_b = float(probs.get("A", 0.0)), float(probs.get("B", 0.0))
    choice = judge_choice(p_a, p_b, tie_margin=tie_margin)
    prefers = "tie" if choice == "tie" else ("target" if choice == target_position else "base")
    return {"target_position": target_position, "p_a": p_a, "p_b": p_b, "choice": choice, "prefers": prefers}


def _judge_problem(*, consistent: int, n: int, interval: dict, same_letter: dict[str, int]) -> str:
    """The sentence the report prints instead of the win-rate of an uninformative judge."""
    picked = same_letter["A"] + same_letter["B"]
    return (f"the judge picked by position in {picked} of {n} items (the same letter whichever answer was shown "
            f"first: A {same_letter['A']} times, B {same_letter['B']} times); its two orders named the same answer in "
            f"{consistent} of {n} (consistency {consistent / n:.2f} [{interval['low']:.2f}, {interval['high']:.2f}], "
            f"below {JUDGE_MIN_CONSISTENCY}): its preferences say nothing about the answers, so no win-rate is given")


def pairwise_win_rate(judge_backend, instructions: list[str], answers_target: list[str], answers_base: list[str],
                      *, tie_margin: float = 0.1, confidence: float = 0.95) -> dict:
    """How often the judge prefers the target model's answer to the base model's, judged in both
    orders (MT-Bench, Zheng et al. 2023; AlpacaEval).

    LLM judges have a position bias: asked "A or B?", small ones often answer the same letter
    whatever the answers say. So every item is shown twice, the target answer as A and as B, in one
    batched `judge_backend.next_token_probs` call for ["A", "B"] (see judge_choice for a tie within
    one order). An item is a win only when both orders prefer the target, a loss only when both
    prefer the base, otherwise a tie. The judge's consistency is the fraction of items whose two
    orders name the same answer (target, base, or a tie both times); a judge answering "A" to
    everything has consistency 0. Below JUDGE_MIN_CONSISTENCY the judge is uninformative: the
    result has win_rate None and a `problem` sentence in its place.

    Returns {"wins", "losses", "ties", "n", "consistent" (items), "consistency",
    "consistency_interval" (Wilson, at `confidence`), "informative", "min_consistency", "same_letter"
    ({"A", "B"}: items where both orders chose that letter, i.e. followed the position), "win_rate" =
    (wins + 0.5 * ties) / n or None, "win_rate_interval" (its Wilson interval) or None,
    "problem" (None when informative), "verdicts": per item {index, "orders": two order verdicts
    {target_position, p_a, p_b, choice, prefers}, consistent, outcome}}, with outcome "win",
    "loss" or "tie" from the target model's side.
    """
    verdicts = judge_verdicts(judge_backend, instructions, answers_target, answers_base, tie_margin=tie_margin)
    return win_rate_summary(verdicts, confidence=confidence)


def judge_verdicts(judge_backend, instructions: list[str], answers_target: list[str], answers_base: list[str],
                   *, tie_margin: float = 0.1, first_index: int = 0) -> list[dict]:
    """Per item, the judge's two order verdicts and the outcome (pairwise_win_rate's "verdicts");
    items are numbered from `first_index` (a sequential judge's later look continues the count)."""
    if not len(instructions) == len(answers_target) == len(answers_base):
        raise ValueError("instructions, answers_target and answers_base must have the same length")
    if not instructions:
        raise ValueError("pairwise_win_rate needs at least one item")
    if not 0 <= tie_margin < 1:
        raise ValueError(f"tie_margin must be in [0, 1), got {tie_margin!r}")
    prompts = []  # item i shown with the target as A (prompt 2i), then as B (prompt 2i + 1)
    for instruction, target, base in zip(instructions, answers_target, answers_base):
        prompts += [judge_prompt(instruction, target, base), judge_prompt(instruction, base, target)]
    probabilities = judge_backend.next_token_probs(prompts, JUDGE_CANDIDATES)
    verdicts = []
    for index in range(len(instructions)):
        orders = [_order_verdict(probabilities[2 * index + offset], target_position=position, tie_margin=tie_margin)
                  for offset, position in enumerate(JUDGE_CANDIDATES)]
        first, second = (order["prefers"] for order in orders)
        outcome = "win" if first == second == "target" else "loss" if first == second == "base" else "tie"
        verdicts.append({"index": first_index + index, "orders": orders, "consistent": first == second,
                         "outcome": outcome})
    return verdicts


def win_rate_summary(verdicts: list[dict], *, confidence: float = 0.95) -> dict:
    """pairwise_win_rate's figures from the items' verdicts, intervals at `confidence`."""
    counts = {outcome: sum(v["outcome"] == outcome for v in verdicts) for outcome in ("win", "loss", "tie")}
    n, consistent = len(verdicts), sum(v["consistent"] for v in verdicts)
    same_letter = {letter: sum(all(order["choice"] == letter for order in v["orders"]) for v in verdicts)
                   for letter in JUDGE_CANDIDATES}
    consistency_interval = wilson_interval(consistent, n, confidence=confidence)
    informative = consistent / n >= JUDGE_MIN_CONSISTENCY
    problem = None if informative else _judge_problem(consistent=consistent, n=n, interval=consistency_interval,
                                                      same_letter=same_letter)
    score = counts["win"] + 0.5 * counts["tie"]
    # The interval is of the same figure: ties count half a win among all n items. An outcome of
    # 0, 1/2 or 1 varies less than a 0/1 one of the same mean, so Wilson's binomial width is, if
    # anything, conservative.
    return {"wins": counts["win"], "losses": counts["loss"], "ties": counts["tie"], "n": n,
            "consistent": consistent, "consistency": consistent / n, "consistency_interval": consistency_interval,
            "informative": informative, "min_consistency": JUDGE_MIN_CONSISTENCY, "same_letter": same_letter,
            "win_rate": score / n if informative else None,
            "win_rate_interval": wilson_interval(score, n, confidence=confidence) if informative else None,
            "problem": problem, "verdicts": verdicts}


def judged_sequentially(judge_backend, instructions: list[str], answers_target: list[str], answers_base: list[str],
                        *, looks: int, tie_margin: float = 0.1) -> dict:
    """The position-consistent win-rate of the target's answers against the base's (pairwise_win_rate)
    on the questions in their drawn order (the list is the cap), judged in `looks` looks of growing
    size (evaluation.sequential): each look judges the next questions in both orders, and the judge
    stops at the first look whose consistency interval lies below JUDGE_MIN_CONSISTENCY
    (uninformative: no win-rate) or above it. Returns pairwise_win_rate's result with "sample",
    its intervals at the looks' level. The answers are given, not generated here: ROUGE-L scores
    every question's answers whether or not the judge stopped early, since it measures the models,
    not the judge."""
    if not len(instructions) == len(answers_target) == len(answers_base):
        raise ValueError("instructions, answers_target and answers_base must have the same length")
    verdicts: list[dict] = []

    def judge(n: int, confidence: float) -> tuple[int, int]:
        start = len(verdicts)
        verdicts.extend(judge_verdicts(judge_backend, instructions[start:n], answers_target[start:n],
                                       answers_base[start:n], tie_margin=tie_margin, first_index=start))
        return sum(v["consistent"] for v in verdicts), len(verdicts)

    _, sample = sample_until_decided(
        look_sizes(len(instructions), looks), judge,
        lambda figure, confidence: consistency_decision(*figure, threshold=JUDGE_MIN_CONSISTENCY,
                                                        confidence=confidence),
        unit="questions")
    return win_rate_summary(verdicts, confidence=sample["confidence"]) | {"sample": sample}


# --- 4. IFD, Instruction-Following Difficulty ------------------------------------------------

def _unconditioned_examples(records: list[dict], conditioned: list[tuple[list[int], list[int]]], tokenizer, *,
                            max_length: int) -> list[tuple[list[int], list[int]]]:
    """The response of each record scored without its instruction: the same chat format with an
    EMPTY user message (record {"instruction": "", "response": ...} through examples_tokenize).
    With the tiny test template that is "<|im_start|>user\\n<|im_end|>\\n<|im_start|>assistant\\n"
    followed by the response; without a chat template, PLAIN_PROMPT with an empty instruction.
    The response tokens are then exactly those scored with the instruction (same text, same end
    of turn), cut to the same count when max_length truncated the conditioned response, so the
    ratio measures only what the instruction adds. (Li et al. score the bare answer text; the
    empty turn avoids asking the chat model to predict a response outside any chat format.)"""
    empty = [{"instruction": "", "response": record["response"]} for record in records]
    examples = []
    for (ids, labels), (_, conditioned_labels) in zip(examples_tokenize(empty, tokenizer, max_length=max_length),
                                                      conditioned):
        prompt_length = sum(label == IGNORE_INDEX for label in labels)
        response_length = sum(label != IGNORE_INDEX for label in conditioned_labels)
        keep = prompt_length + response_length
        examples.append((ids[:keep], labels[:keep]))
    return examples


def ifd_scores(model, tokenizer, records: list[dict], *, max_length: int, batch_size: int = 32) -> list[float]:
    """Per record, IFD = loss(response | instruction) / loss(response | empty instruction), both
    mean response-token cross-entropies in nats (see _unconditioned_examples for the empty
    input). Dimensionless, > 0: below 1 the instruction helps predict the response, at or above 1
    it does not (Li et al. drop such pairs as unhelpful or misaligned)."""
    conditioned = examples_tokenize(records, tokenizer, max_length=max_length)
    for index, (_, labels) in enumerate(conditioned):
        if all(label == IGNORE_INDEX for label in labels):
            raise ValueError(f"record {index} has no response tokens within max_length={max_length}; IFD is undefined")
    unconditioned = _unconditioned_examples(records, conditioned, tokenizer, max_length=max_length)
    pad_id = _pad_id(tokenizer)
    with_instruction = _example_losses(model, conditioned, pad_id=pad_id, batch_size=batch_size)
    without_instruction = _example_losses(model, unconditioned, pad_id=pad_id, batch_size=batch_size)
    return [cond / max(alone, 1e-12) for cond, alone in zip(with_instruction, without_instruction)]


def ifd_report(model, tokenizer, records: list[dict], *, max_length: int) -> dict:
    """{"mean", "mean_interval" (its 95% t interval over the records), "median", "n",
    "share_at_least_1" (fraction of records whose instruction does not help),
    "share_at_least_1_interval" (its 95% Wilson interval), "histogram": {"edges": 21 bin edges over
    IFD_HISTOGRAM_RANGE, "counts": 20 counts, scores above the range in the last bin}}."""
    if not records:
        raise ValueError("ifd_report needs at least one record")
    scores = ifd_scores(model, tokenizer, records, max_length=max_length)
    low, high = IFD_HISTOGRAM_RANGE
    counts, edges = np.histogram(np.clip(scores, low, high), bins=IFD_HISTOGRAM_BINS, range=IFD_HISTOGRAM_RANGE)
    at_least_1 = sum(score >= 1.0 for score in scores)
    return {
        "mean": statistics.fmean(scores), "mean_interval": mean_interval(scores, bounds=(0.0, None)),
        "median": statistics.median(scores), "n": len(scores), "share_at_least_1": at_least_1 / len(scores),
        "share_at_least_1_interval": wilson_interval(at_least_1, len(scores)),
        "histogram": {"edges": edges.tolist(), "counts": counts.astype(int).tolist()},
    }
