"""Chat formatting: how a chat prompt, or an (instruction, response) record, becomes the text a
model reads. One home for the format, so an adapter is trained (privacy.dp.train), sampled
(synthesis.lm.generation) and scored (evaluation) on the same token sequences.

With a chat template the tokenizer writes the text; without one, the plain ### Instruction /
### Response format below. Plain Python over a Hugging Face tokenizer: no Django, no torch.
"""

# The plain format, for tokenizers without a chat template (prompts are data, not code).
PLAIN_SYSTEM = "{content}\n\n"
PLAIN_INSTRUCTION = "### Instruction:\n{content}\n\n"
PLAIN_RESPONSE = "### Response:\n{content}\n\n"
PLAIN_GENERATION_PROMPT = "### Response:\n"
PLAIN_BY_ROLE = {"system": PLAIN_SYSTEM, "user": PLAIN_INSTRUCTION, "assistant": PLAIN_RESPONSE}
# One user message with the assistant's turn opened: prompt_text of [user] in the plain format.
PLAIN_PROMPT = "### Instruction:\n{instruction}\n\n### Response:\n"


# Where a user turn is cut open (user_turn_text): a private-use character no template writes or escapes.
TURN_CUT = "\ue000"


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def prompt_text(tokenizer, messages: list[dict]) -> str:
    """The chat prompt as the model sees it before it answers: the chat template with the
    assistant's turn opened (the generation prompt), or the plain format ending in
    PLAIN_GENERATION_PROMPT when the tokenizer has no chat template. A last message
    {"role": "user", "content": prefix, "open": True} asks instead for the user's turn opened
    (user_turn_text): the model then writes what a user would."""
    if messages and messages[-1].get("open"):
        return user_turn_text(tokenizer, messages[:-1], prefix=messages[-1]["content"])
    if has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "".join(PLAIN_BY_ROLE[m["role"]].format(content=m["content"]) for m in messages) + PLAIN_GENERATION_PROMPT


def user_turn_text(tokenizer, messages: list[dict], *, prefix: str = "") -> str:
    """The conversation `messages` followed by a user turn opened and begun with `prefix`: the
    text a model trained on whole records (instruction in the loss) continues with a user's
    message, ended by the template's end-of-turn token. With a chat template it is the templated
    conversation cut where the new user message begins, so it matches record_prompt_response's
    prompt token for token (the template's default system message included); without one, the
    plain format's instruction header."""
    if has_chat_template(tokenizer):
        text = tokenizer.apply_chat_template(messages + [{"role": "user", "content": TURN_CUT}], tokenize=False)
        if text.count(TURN_CUT) == 1:
            return text[:text.index(TURN_CUT)] + prefix
    earlier = "".join(PLAIN_BY_ROLE[m["role"]].format(content=m["content"]) for m in messages)
    return earlier + PLAIN_INSTRUCTION.split("{content}")[0] + prefix


def record_messages(record: dict) -> list[dict]:
    """The record as a conversation: user = instruction, assistant = response."""
    return [{"role": "user", "content": record["instruction"]},
            {"role": "assistant", "content": record["response"]}]


def record_prompt_response(record: dict, tokenizer, *, end_of_sequence: bool) -> tuple[str, str]:
    """(prompt, response): the record split where the model's answer begins, as training sees
    it (the prompt is masked out of the loss). The prompt is prompt_text of the user message;
    with a chat template the response is the rest of the whole templated conversation (its
    end-of-turn marker included). Without a template, or with one whose conversation does not
    begin with its own prompt, the plain format; end_of_sequence then appends the tokenizer's EOS
    token to the response, so a model trained on it learns to stop."""
    user = record_messages(record)[:1]
    if has_chat_template(tokenizer):
        prompt = prompt_text(tokenizer, user)
        full = tokenizer.apply_chat_template(record_messages(record), tokenize=False)
        if full.startswith(prompt):
            return prompt, full[len(prompt):]
    response = record["response"] + ((tokenizer.eos_token or "") if end_of_sequence else "")
    return PLAIN_PROMPT.format(instruction=record["instruction"]), response


def record_text(record: dict, tokenizer, *, end_of_sequence: bool) -> str:
    """The whole record as one string: the tokenizer's chat template over the conversation (no
    generation prompt: the assistant's turn is written), else PLAIN_PROMPT + response, with the
    EOS token after it when end_of_sequence. With a template this is prompt + response of
    record_prompt_response (for a template whose conversation begins with its own prompt)."""
    if has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(record_messages(record), tokenize=False)
    return "".join(record_prompt_response(record, tokenizer, end_of_sequence=end_of_sequence))
