"""Log-probabilities of text under a causal LM: the raw material of every privacy attack.

All log-probabilities are natural logs (nats); a token's log-probability is given its prefix.
Records are tokenized exactly as in training (privacy.dp.train.examples_tokenize: the chat
prompt from the instruction, then the response and end-of-turn), so a score measures what the
training loss measured. No Django imports: this module runs anywhere torch does.

Scoring is the evaluation's dominant cost, so one forward pass serves many texts:
  - shared prefix: the attacks score many texts that begin alike (100 candidate names filled
    into one record, 1000 secrets in one canary sentence, records under one chat template).
    The tokens every text shares are run once; their keys and values (the KV cache) are
    repeated over each batch, and only the rest of each text is run. A token's log-prob is
    still given ALL tokens before it, so the scores are those of whole texts;
  - logits only where a token is scored (transformers' `logits_to_keep` with a boolean mask):
    no vocabulary-sized projection and softmax for prompt tokens or padding;
  - batches of similar length under a token budget (less padding, bounded memory).
The model's own dtype is used. A bfloat16 model is about twice as fast on a CPU with bf16 units
(and slower on one without); its log-probs differ from float32 by up to about 4 nats on a
190-token record, 0.04 nats in a mean token log-prob (benchmarks/evaluation.py measures it).
Log-softmax is always taken in float32.
"""
import copy
import inspect

import torch

from privacy.dp.train import IGNORE_INDEX, examples_tokenize

MAX_BATCH_TOKENS = 2048  # padded tokens per forward pass: bounds the (tokens x vocabulary) logits
SOFTMAX_ROWS = 64        # logit rows normalised at once


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)


def _keeps_logits(model) -> bool:
    """Whether the model's forward takes `logits_to_keep` as a per-row boolean mask (transformers
    5 models); PEFT wrappers pass it through to the model they wrap."""
    import transformers.modeling_utils  # deferred: this module imports without transformers

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return ("logits_to_keep" in inspect.signature(base.forward).parameters
            and hasattr(transformers.modeling_utils, "slice_logits_to_keep"))


def _cache_argument(model) -> str:
    """The forward argument that takes a KV cache: `cache` from transformers 5.25 on (which warns
    on the older name and drops it in 5.40), `past_key_values` before."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _kept_logprobs(model, input_ids, attention_mask, targets, keep, *, past=None, cache: bool = False):
    """log p(targets[i, j] | tokens up to input [i, j]) at the positions where `keep` (batch,
    length) is True, flattened row by row; and the KV cache of the inputs when `cache`."""
    options = {"input_ids": input_ids, "attention_mask": attention_mask, _cache_argument(model): past, "use_cache": cache}
    if _keeps_logits(model):
        output = model(**options, logits_to_keep=keep)
        logits = output.logits
    else:
        output = model(**options)
        logits = output.logits[keep]
    pieces = [torch.zeros(0, device=logits.device)]
    # log_softmax at the target, in float32, a few rows at a time: the rows stay in the CPU's
    # cache, about 2.5x faster than one pass over the whole (tokens x vocabulary) tensor
    for rows, row_targets in zip(logits.split(SOFTMAX_ROWS), targets[keep].split(SOFTMAX_ROWS)):
        rows = rows.float()
        pieces.append(rows.gather(1, row_targets.unsqueeze(1)).squeeze(1) - torch.logsumexp(rows, dim=-1))
    returned = getattr(output, "cache", None)
    if returned is None:
        returned = getattr(output, "past_key_values", None)
    return torch.cat(pieces), returned


def _shared_length(examples: list[tuple[list[int], list[int]]]) -> int:
    """How many leading positions all examples agree on, in input ids and in labels."""
    first_ids, first_labels = examples[0]
    shortest = min(len(ids) for ids, _ in examples)
    length = 0
    while length < shortest and all(ids[length] == first_ids[length] and labels[length] == first_labels[length]
                                    for ids, labels in examples):
        length += 1
    return length


def _prefix_run(model, examples, device) -> tuple[int, list[float], object]:
    """(c, log-probs of the scored tokens 1..c, KV cache of tokens 0..c-1) for the tokens all
    examples share. c stops one short of the shared part, so every example still has an input
    token (the last shared one) whose logits score its first own token. c = 0: nothing shared."""
    cached = _shared_length(examples) - 1 if len(examples) > 1 else 0
    if cached < 1:
        return 0, [], None
    ids, labels = examples[0]
    input_ids = torch.tensor([ids[:cached]], device=device)
    targets = torch.tensor([ids[1:cached + 1]], device=device)
    keep = torch.tensor([[label != IGNORE_INDEX for label in labels[1:cached + 1]]], device=device)
    kept, cache = _kept_logprobs(model, input_ids, torch.ones_like(input_ids), targets, keep, cache=True)
    if cache is None or not hasattr(cache, "batch_repeat_interleave"):
        return 0, [], None  # a model without a repeatable cache scores every text whole
    return cached, kept.tolist(), cache


def _batches(lengths: list[int], batch_size: int, max_tokens: int) -> list[list[int]]:
    """Indices grouped longest first into batches of at most batch_size texts and max_tokens
    padded tokens (a single longer text still gets a batch of its own)."""
    order = sorted(range(len(lengths)), key=lambda index: -lengths[index])
    batches, current = [], []
    for index in order:
        if current and (len(current) >= batch_size or (len(current) + 1) * lengths[current[0]] > max_tokens):
            batches.append(current)
            current = []
        current.append(index)
    return batches + [current] if current else batches


def _suffix_batch(examples, cached: int, pad_id: int):
    """Tensors of one batch run after the first `cached` tokens (in the KV cache): input ids from
    position `cached` on, right-padded; the next token at each position; where it is scored;
    and the attention mask over cache and inputs."""
    width = max(len(ids) for ids, _ in examples) - cached
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    targets = torch.zeros((len(examples), width), dtype=torch.long)
    keep = torch.zeros((len(examples), width), dtype=torch.bool)
    attention = torch.zeros((len(examples), cached + width), dtype=torch.long)
    for row, (ids, labels) in enumerate(examples):
        scored = len(ids) - cached - 1
        input_ids[row, :scored + 1] = torch.tensor(ids[cached:])
        targets[row, :scored] = torch.tensor(ids[cached + 1:])
        keep[row, :scored] = torch.tensor([label != IGNORE_INDEX for label in labels[cached + 1:]])
        attention[row, :len(ids)] = 1
    return input_ids, targets, keep, attention


def _scored_logprobs(model, examples: list[tuple[list[int], list[int]]], pad_id: int,
                     batch_size: int) -> list[list[float]]:
    """Per example, the log-probs of its positions t >= 1 whose label is not IGNORE_INDEX:
    log p(ids[t] | ids[:t]), in nats, in position order."""
    device, was_training = next(model.parameters()).device, model.training
    result: list[list[float]] = [[] for _ in examples]
    scorable = [index for index, (ids, _) in enumerate(examples) if len(ids) >= 2]
    model.eval()
    try:
        with torch.inference_mode():
            cached, prefix, cache = _prefix_run(model, [examples[i] for i in scorable], device)
            lengths = [len(examples[i][0]) - cached for i in scorable]
            for batch in _batches(lengths, batch_size, MAX_BATCH_TOKENS):
                rows = [scorable[i] for i in batch]
                input_ids, targets, keep, attention = _suffix_batch([examples[i] for i in rows], cached, pad_id)
                past = None
                if cache is not None:
                    past = copy.deepcopy(cache)  # the forward pass appends to it
                    past.batch_repeat_interleave(len(rows))
                kept, _ = _kept_logprobs(model, input_ids.to(device), attention.to(device), targets.to(device),
                                         keep.to(device), past=past)
                for index, values in zip(rows, kept.split(keep.sum(1).tolist())):
                    result[index] = prefix + values.tolist()
    finally:
        model.train(was_training)
    return result


def examples_token_logprobs(model, examples: list[tuple[list[int], list[int]]], *, pad_id: int,
                            batch_size: int = 8) -> list[list[float]]:
    """Per (input_ids, labels) example, the log-probs (nats) of its tokens whose label is not
    IGNORE_INDEX, each given every token before it, in position order."""
    return _scored_logprobs(model, examples, pad_id, batch_size)


def token_logprobs(model, tokenizer, records: list[dict], *, max_length: int,
                   batch_size: int = 8) -> list[list[float]]:
    """Per record ({"instruction", "response"}), the log-prob (nats) of each response token
    given everything before it, in training format. mean(-x) equals per_example_loss."""
    examples = examples_tokenize(records, tokenizer, max_length=max_length)
    return _scored_logprobs(model, examples, _pad_id(tokenizer), batch_size)


def response_logprobs(model, tokenizer, records: list[dict], *, max_length: int,
                      batch_size: int = 8) -> list[float]:
    """Per record, log p(response | chat prompt of the instruction), in nats (the sum of
    token_logprobs): the Secret Sharer's log-perplexity, negated."""
    return [sum(row) for row in token_logprobs(model, tokenizer, records, max_length=max_length,
                                               batch_size=batch_size)]


def examples_logprobs(model, tokenizer, examples: list[tuple[list[int], list[int]]], *,
                      batch_size: int = 8) -> list[float]:
    """Per (input_ids, labels) example, the sum of the log-probs (nats) of its tokens whose label
    is not IGNORE_INDEX, each given every token before it."""
    return [sum(row) for row in _scored_logprobs(model, examples, _pad_id(tokenizer), batch_size)]


def record_logprobs(model, tokenizer, records: list[dict], *, max_length: int,
                    batch_size: int = 8) -> list[float]:
    """Per record, the log-prob (nats) of the WHOLE chat-formatted text (prompt and response,
    every token after the first), so a change anywhere in the record changes the score."""
    examples = [(ids, ids) for ids, _ in examples_tokenize(records, tokenizer, max_length=max_length)]
    return [sum(row) for row in _scored_logprobs(model, examples, _pad_id(tokenizer), batch_size)]


def continuation_logprobs(model, tokenizer, prompt_text: str, continuations: list[str], *,
                          batch_size: int = 16) -> list[float]:
    """Per continuation, the sum of log-probs (nats) of its tokens after the raw prompt_text.
    Prompt and continuation are tokenized separately (as examples_tokenize does), so every
    candidate is scored after the same prompt tokens. An empty prompt is replaced by the BOS
    token when the tokenizer has one; otherwise the first continuation token is not scored."""
    prompt = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    if not prompt and tokenizer.bos_token_id is not None:
        prompt = [tokenizer.bos_token_id]
    examples = []
    for continuation in continuations:
        tokens = tokenizer(continuation, add_special_tokens=False)["input_ids"]
        labels = [IGNORE_INDEX] * len(prompt) + tokens
        examples.append((prompt + tokens, labels))
    return [sum(row) for row in _scored_logprobs(model, examples, _pad_id(tokenizer), batch_size)]


def sequence_logprob(model, tokenizer, prompt_text: str, continuation: str) -> float:
    """log p(continuation | prompt_text) in nats: the sum over the continuation's tokens."""
    return continuation_logprobs(model, tokenizer, prompt_text, [continuation])[0]
