"""Log-probabilities of text under a causal LM: the raw material of every privacy attack.

All log-probabilities are natural logs (nats); a token's log-probability is given its prefix.
Records are tokenized exactly as in training (privacy.dp_train.examples_tokenize: the chat
prompt from the instruction, then the response and end-of-turn), so a score measures what the
training loss measured. No Django imports: this module runs anywhere torch does.
"""
import torch

from privacy.dp_train import IGNORE_INDEX, PLAIN_PROMPT, collate, examples_tokenize


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)


def _position_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """log p(token t | tokens < t) for t = 1..L-1, shape (batch, L-1); padding positions are junk."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
    return torch.log_softmax(logits, dim=-1).gather(2, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)


def _scored_logprobs(model, examples: list[tuple[list[int], list[int]]], pad_id: int,
                     batch_size: int) -> list[list[float]]:
    """Per example, the log-probs of the positions whose label is not IGNORE_INDEX."""
    model.eval()
    pad = collate(pad_id)
    result = []
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            input_ids, attention, labels = pad(examples[start:start + batch_size])
            logprobs = _position_logprobs(model, input_ids, attention)
            counted = labels[:, 1:] != IGNORE_INDEX
            result += [row[mask].tolist() for row, mask in zip(logprobs, counted)]
    return result


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


def record_logprobs(model, tokenizer, records: list[dict], *, max_length: int,
                    batch_size: int = 8) -> list[float]:
    """Per record, the log-prob (nats) of the WHOLE chat-formatted text (prompt and response,
    every token after the first), so a change anywhere in the record changes the score."""
    examples = [(ids, ids) for ids, _ in examples_tokenize(records, tokenizer, max_length=max_length)]
    return [sum(row) for row in _scored_logprobs(model, examples, _pad_id(tokenizer), batch_size)]


def chat_text(record: dict, tokenizer) -> str:
    """The record as the model saw it in training (user = instruction, assistant = response),
    as one string: the tokenizer's chat template, else PLAIN_PROMPT + response."""
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": record["instruction"]},
                    {"role": "assistant", "content": record["response"]}]
        return tokenizer.apply_chat_template(messages, tokenize=False)
    return PLAIN_PROMPT.format(instruction=record["instruction"]) + record["response"]


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
