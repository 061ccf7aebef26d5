"""Chat formatting has one home (synthesis.lm.chat): the texts it writes are pinned here, and the
three places that read them agree: training (privacy.dp.train.examples_tokenize), generation
(synthesis.lm.generation.prompt_token_ids) and the evaluation (scoring through examples_tokenize,
the reconstruction attack through record_text)."""
import copy
import subprocess
import sys

import pytest
from transformers import AutoTokenizer

from privacy.dp.train import IGNORE_INDEX, examples_tokenize
from synthesis.lm.chat import prompt_text, record_prompt_response, record_text
from synthesis.lm.generation import prompt_token_ids
from tests.support.tiny_model import tiny_model_dir

RECORD = {"instruction": "Patient Alice reports fever .", "response": "Rest and drink water ."}
USER = [{"role": "user", "content": RECORD["instruction"]}]


@pytest.fixture(scope="module")
def templated(tmp_path_factory):
    """The tiny model's tokenizer: a ChatML-like chat template, EOS <|im_end|>."""
    directory = tiny_model_dir(tmp_path_factory.mktemp("tiny-chat"), [RECORD["instruction"], RECORD["response"]])
    return AutoTokenizer.from_pretrained(directory)


@pytest.fixture(scope="module")
def plain(templated):
    """The same vocabulary without a chat template: the plain ### Instruction format."""
    tokenizer = copy.deepcopy(templated)
    tokenizer.chat_template = None
    return tokenizer


def test_a_chat_template_tokenizer_gets_the_template_with_the_assistant_turn_opened(templated):
    prompt = "<|im_start|>user\nPatient Alice reports fever .<|im_end|>\n<|im_start|>assistant\n"
    assert prompt_text(templated, USER) == prompt
    assert record_prompt_response(RECORD, templated, end_of_sequence=True) == (
        prompt, "Rest and drink water .<|im_end|>\n")
    # the template writes its own end of turn: end_of_sequence adds nothing to it
    assert record_prompt_response(RECORD, templated, end_of_sequence=False) == (
        prompt, "Rest and drink water .<|im_end|>\n")
    assert record_text(RECORD, templated, end_of_sequence=False) == prompt + "Rest and drink water .<|im_end|>\n"


def test_a_tokenizer_without_a_template_gets_the_plain_format_with_eos_only_where_asked(plain):
    prompt = "### Instruction:\nPatient Alice reports fever .\n\n### Response:\n"
    assert prompt_text(plain, USER) == prompt
    system = [{"role": "system", "content": "Be brief."}] + USER
    assert prompt_text(plain, system) == "Be brief.\n\n" + prompt
    assert record_prompt_response(RECORD, plain, end_of_sequence=True) == (prompt, "Rest and drink water .<|im_end|>")
    assert record_text(RECORD, plain, end_of_sequence=False) == prompt + "Rest and drink water ."
    assert record_text(RECORD, plain, end_of_sequence=True) == prompt + "Rest and drink water .<|im_end|>"


@pytest.mark.parametrize("which", ["templated", "plain"])
def test_training_generation_and_evaluation_read_the_same_prompt_and_record(which, request):
    tokenizer = request.getfixturevalue(which)
    (ids, labels), = examples_tokenize([RECORD], tokenizer, max_length=256)
    prompt_length = labels.count(IGNORE_INDEX)

    # generation samples after exactly the prompt tokens training masked out
    assert ids[:prompt_length] == prompt_token_ids(tokenizer, USER)
    # training learns the response as record_prompt_response splits it, and the two halves make
    # the text the reconstruction attack reads (without a template, that text and the EOS token)
    response = record_prompt_response(RECORD, tokenizer, end_of_sequence=True)[1]
    assert ids[prompt_length:] == tokenizer(response, add_special_tokens=False)["input_ids"]
    evaluated = record_text(RECORD, tokenizer, end_of_sequence=False)
    trained = "".join(record_prompt_response(RECORD, tokenizer, end_of_sequence=True))
    assert trained == (evaluated if which == "templated" else evaluated + tokenizer.eos_token)


def test_a_template_whose_conversation_does_not_begin_with_its_prompt_trains_in_the_plain_format(templated):
    # e.g. a template that opens a thinking block in the generation prompt only
    tokenizer = copy.deepcopy(templated)
    tokenizer.chat_template = templated.chat_template.replace(
        "<|im_start|>assistant\n{% endif %}", "<|im_start|>assistant\n<think>\n{% endif %}")

    assert prompt_text(tokenizer, USER).endswith("<|im_start|>assistant\n<think>\n")
    assert record_prompt_response(RECORD, tokenizer, end_of_sequence=True) == (
        "### Instruction:\nPatient Alice reports fever .\n\n### Response:\n", "Rest and drink water .<|im_end|>")
    assert record_text(RECORD, tokenizer, end_of_sequence=False).startswith("<|im_start|>user\n")


def test_the_chat_module_imports_neither_django_nor_torch():
    code = ("import sys, synthesis.lm.chat; "
            "print(sorted(m for m in ('django', 'torch', 'jobs') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("which", ["templated", "plain"])
def test_an_opened_user_turn_is_the_record_cut_where_its_instruction_begins(which, request):
    tokenizer = request.getfixturevalue(which)
    opened = [{"role": "user", "content": "", "open": True}]
    header = prompt_text(tokenizer, opened)

    assert header == ("<|im_start|>user\n" if which == "templated" else "### Instruction:\n")
    # a model trained on whole records reads, at this point, the beginning of an instruction:
    # stage 2's user-turn sampling continues exactly the token sequence training learned
    whole = record_text(RECORD, tokenizer, end_of_sequence=False)
    assert whole.startswith(header + RECORD["instruction"])
    (ids, labels), = examples_tokenize([RECORD], tokenizer, max_length=256, whole_record=True)
    assert ids[:len(prompt_token_ids(tokenizer, opened))] == prompt_token_ids(tokenizer, opened)
    assert labels == ids  # every token in the loss, the instruction's included
    with_prefix = [{"role": "user", "content": "Patient", "open": True}]
    assert prompt_text(tokenizer, with_prefix) == header + "Patient"


def test_an_opened_user_turn_follows_the_conversation_before_it(templated, plain):
    system = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "", "open": True}]
    assert prompt_text(templated, system) == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n"
    assert prompt_text(plain, system) == "Be brief.\n\n### Instruction:\n"


def test_a_whole_record_too_long_keeps_its_beginning(templated):
    (ids, labels), = examples_tokenize([RECORD], templated, max_length=5, whole_record=True)
    full = templated(record_text(RECORD, templated, end_of_sequence=False), add_special_tokens=False)["input_ids"]
    assert ids == full[:5] and labels == ids
