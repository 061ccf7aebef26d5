"""The generation backends' shared behaviour, on a tiny random Llama (seconds, CPU)."""
import importlib.util

import pytest
import torch

from privacy.dp.train import DPTrainConfig, lora_wrap
from synthesis.lm import generation
from synthesis.lm.backends import backend_choose, backend_load
from synthesis.lm.generation import (Completion, GenerationError, SamplingParams, TransformersBackend, batches_plan,
    candidate_token_ids)
from synthesis.lm.chat import prompt_text
from synthesis.lm.loader import causal_lm_load
from tests.support.tiny_model import tiny_model_dir

TEXTS = [
    "Is this instruction about medicine ? Answer yes or no . Yes no",
    "Write a question a doctor could answer about fever , cough and sleep .",
    "the patient has a headache and the nurse gives water",
]
QUESTIONS = [
    "fever",
    "Write a question a doctor could answer about fever , cough and sleep .",
    "the patient has a headache",
    "Is this instruction about medicine ? Answer yes or no .",
    "cough and sleep",
    "the nurse gives water and the patient has a headache and a fever",
    "a doctor",
]
GREEDY = SamplingParams(temperature=0.0, max_new_tokens=10)


def chat(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("tiny-model"), TEXTS)


@pytest.fixture(scope="module")
def backend(model_dir, tmp_path_factory):
    loaded = TransformersBackend.load(model_spec=str(model_dir), adapter_path=None,
                                      cache_dir=tmp_path_factory.mktemp("cache"), max_batch_size=3)
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def adapter_dir(model_dir, tmp_path_factory):
    model, _ = causal_lm_load(str(model_dir), cache_dir=tmp_path_factory.mktemp("cache"))
    wrapped = lora_wrap(model, DPTrainConfig(target_epsilon=1.0, delta=1e-5, lora_rank=4))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, parameter in wrapped.named_parameters():
            if "lora_B" in name:  # lora_wrap starts B at zero, which would leave the model unchanged
                parameter.copy_(torch.randn_like(parameter))
    directory = tmp_path_factory.mktemp("adapter")
    wrapped.save_pretrained(directory)
    return directory


def prompt_length(backend, text: str) -> int:
    return len(backend.tokenizer(prompt_text(backend.tokenizer, chat(text)), add_special_tokens=False)["input_ids"])


def test_results_come_back_in_input_order_although_batches_are_sorted_by_length(backend):
    lengths = [prompt_length(backend, q) for q in QUESTIONS]
    assert len(set(lengths)) == len(lengths) and lengths != sorted(lengths, reverse=True)

    completions = backend.generate([chat(q) for q in QUESTIONS], GREEDY)

    assert [c.prompt_tokens for c in completions] == lengths


def test_batches_group_prompts_of_similar_length_longest_first():
    assert batches_plan([5, 50, 6, 49, 7], 2) == [[1, 3], [4, 2], [0]]
    assert batches_plan([], 4) == []


def test_greedy_batched_output_equals_one_prompt_at_a_time(backend):
    prompts = [chat(q) for q in QUESTIONS]
    batched = backend.generate(prompts, GREEDY)
    single = TransformersBackend(backend.model, backend.tokenizer, max_batch_size=1).generate(prompts, GREEDY)

    assert [c.text for c in batched] == [c.text for c in single]
    assert len({c.text for c in batched}) > 2  # real, differing outputs, not all empty


def test_sampling_is_repeatable_for_a_seed_and_changes_with_the_seed(backend):
    prompts = [chat(q) for q in QUESTIONS] + [chat(QUESTIONS[0])] * 3
    sampling = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=12, seed=7)

    first = [c.text for c in backend.generate(prompts, sampling)]
    again = [c.text for c in backend.generate(prompts, sampling)]
    other = [c.text for c in backend.generate(prompts, SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=12, seed=8))]

    assert first == again
    assert first != other
    assert len(set(first[-3:])) > 1  # the same prompt three times still gives different samples


def test_sampling_leaves_the_callers_random_state_alone(backend):
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    backend.generate([chat("fever")], SamplingParams(temperature=1.0, max_new_tokens=3))
    assert torch.equal(torch.rand(1), expected)


def test_on_completion_is_called_once_per_prompt_with_its_index(backend):
    calls = []
    completions = backend.generate([chat(q) for q in QUESTIONS], GREEDY,
                                   on_completion=lambda index, completion: calls.append((index, completion)))

    assert sorted(index for index, _ in calls) == list(range(len(QUESTIONS)))
    assert all(completion == completions[index] for index, completion in calls)
    # called batch by batch, longest prompts first
    assert calls[0][0] == max(range(len(QUESTIONS)), key=lambda i: len(QUESTIONS[i].split()))


def test_token_counts_and_finish_reason_hitting_the_length_limit(backend):
    for completion in backend.generate([chat(q) for q in QUESTIONS], SamplingParams(temperature=1.0, max_new_tokens=5)):
        assert isinstance(completion, Completion)
        assert completion.prompt_tokens > 0
        if completion.finish_reason == "length":
            assert completion.completion_tokens == 5
        else:
            assert completion.finish_reason == "stop" and 1 <= completion.completion_tokens <= 5
        assert "<|im_end|>" not in completion.text


def test_finish_reason_is_stop_when_the_model_produces_end_of_sequence(model_dir, tmp_path):
    model, tokenizer = causal_lm_load(str(model_dir), cache_dir=tmp_path)
    reference = TransformersBackend(model, tokenizer)
    first_word = reference.generate([chat("fever")], SamplingParams(temperature=0.0, max_new_tokens=1))[0].text
    # Declare the word greedy decoding starts with an end-of-sequence token: generation stops at once.
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids(first_word)

    completion = TransformersBackend(model, tokenizer).generate([chat("fever")], GREEDY)[0]

    assert completion == Completion(text="", prompt_tokens=prompt_length(reference, "fever"),
                                    completion_tokens=1, finish_reason="stop")


def test_a_lora_adapter_changes_the_greedy_outputs(model_dir, adapter_dir, backend, tmp_path):
    adapted = TransformersBackend.load(model_spec=str(model_dir), adapter_path=adapter_dir, cache_dir=tmp_path)
    prompts = [chat(q) for q in QUESTIONS]

    with_adapter = [c.text for c in adapted.generate(prompts, GREEDY)]
    without = [c.text for c in backend.generate(prompts, GREEDY)]

    assert with_adapter != without


def test_a_directory_without_adapter_config_is_refused(model_dir, tmp_path):
    (tmp_path / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(GenerationError, match="no adapter_config.json"):
        TransformersBackend.load(model_spec=str(model_dir), adapter_path=tmp_path, cache_dir=tmp_path)


def test_next_token_probs_match_a_manual_softmax(backend):
    prompts = [chat(QUESTIONS[3]), chat("fever"), chat(QUESTIONS[5])]  # left padding in the batch

    probs = backend.next_token_probs(prompts, ["yes", "no", "zebra"])

    tokenizer = backend.tokenizer
    ids = tokenizer(prompt_text(tokenizer, prompts[0]), add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        manual = torch.softmax(backend.model(input_ids=ids).logits[0, -1].float(), dim=-1)
    yes_ids = tokenizer.convert_tokens_to_ids(["yes", "Yes"])  # both forms are in the tiny vocabulary
    assert sorted(candidate_token_ids(tokenizer, "yes")) == sorted(yes_ids)
    assert probs[0]["yes"] == pytest.approx(float(manual[yes_ids].sum()), abs=1e-5)
    assert probs[0]["no"] == pytest.approx(float(manual[tokenizer.convert_tokens_to_ids("no")]), abs=1e-5)
    assert probs[0]["zebra"] == 0.0  # not in the vocabulary: its <unk> first token does not count
    assert all(0.0 <= p <= 1.0 for row in probs for p in row.values())
    assert probs[1] != probs[0]


def test_backend_choose_takes_vllm_only_with_cuda_and_vllm(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def machine(*, cuda: bool, vllm: bool):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a: (object() if vllm else None) if name == "vllm" else real_find_spec(name, *a))

    machine(cuda=True, vllm=True)
    assert backend_choose("auto") == "vllm"
    assert backend_choose("vllm") == "vllm"
    assert backend_choose("transformers") == "transformers"
    for cuda, vllm in [(False, True), (True, False), (False, False)]:
        machine(cuda=cuda, vllm=vllm)
        assert backend_choose() == "transformers"
    machine(cuda=False, vllm=True)
    with pytest.raises(GenerationError, match=r"CUDA is missing.*`gpu` extra"):
        backend_choose("vllm")
    machine(cuda=True, vllm=False)
    with pytest.raises(GenerationError, match=r"vllm is missing.*`gpu` extra"):
        backend_choose("vllm")
    with pytest.raises(GenerationError, match="unknown generation backend"):
        backend_choose("llama.cpp")


def test_backend_load_gives_the_transformers_backend_without_a_gpu(model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loaded = backend_load(model_spec=str(model_dir), adapter_path=None, cache_dir=tmp_path)
    assert isinstance(loaded, TransformersBackend)
    assert loaded.generate([chat("fever")], GREEDY)[0].completion_tokens >= 1


def test_automatic_batch_size_stays_between_1_and_64(backend):
    automatic = TransformersBackend(backend.model, backend.tokenizer)
    assert 1 <= automatic.batch_size(20, 128) <= 64
    estimate = generation.sequence_bytes_estimate(backend.model, prompt_length=20, max_new_tokens=128)
    assert estimate > generation.sequence_bytes_estimate(backend.model, prompt_length=20, max_new_tokens=1) > 0


@pytest.mark.parametrize("fields, message", [
    ({"temperature": -0.1}, "temperature must be a number in [0, 5]"),
    ({"temperature": 5.5}, "temperature must be a number in [0, 5]"),
    ({"top_p": 0.0}, "top_p must be a probability in (0, 1]"),
    ({"top_p": 1.5}, "top_p must be a probability in (0, 1]"),
    ({"max_new_tokens": 0}, "max_new_tokens must be a whole number of tokens in [1, 4096]"),
    ({"max_new_tokens": 5000}, "max_new_tokens must be a whole number of tokens in [1, 4096]"),
    ({"max_new_tokens": 2.5}, "max_new_tokens must be a whole number"),
    ({"seed": -1}, "seed must be a non-negative integer"),
])
def test_sampling_params_refuse_out_of_range_values_saying_what_to_fix(fields, message):
    with pytest.raises(GenerationError) as error:
        SamplingParams(**fields)
    assert message in str(error.value)


def test_malformed_prompts_are_refused_naming_the_prompt(backend):
    with pytest.raises(GenerationError, match="prompt 1 has a malformed message"):
        backend.generate([chat("fever"), [{"role": "robot", "content": "hi"}]], GREEDY)
    with pytest.raises(GenerationError, match="prompt 0 must be a non-empty list"):
        backend.next_token_probs([[]], ["yes"])


def test_only_the_last_message_may_open_the_users_turn(backend):
    opened = {"role": "user", "content": "", "open": True}
    with pytest.raises(GenerationError, match="prompt 0: only its last message may be open"):
        backend.generate([[opened, {"role": "user", "content": "fever"}]], GREEDY)
    with pytest.raises(GenerationError, match="only a user's"):
        backend.generate([[{"role": "assistant", "content": "", "open": True}]], GREEDY)


@pytest.mark.parametrize("loss_on", ["record", "response"])
def test_an_adapter_trained_on_whole_records_writes_their_instruction_when_the_users_turn_is_opened(
        model_dir, tmp_path, loss_on):
    from types import SimpleNamespace

    from privacy.dp.train import plain_lora_train

    record = {"instruction": TEXTS[1], "response": TEXTS[2]}
    params = SimpleNamespace(lora_rank=8, lora_alpha=16, target_modules="q_proj,v_proj", learning_rate=3e-2,
                             epochs=40.0, logical_batch_size=1, physical_batch_size=1, max_length=64, seed=0,
                             loss_on=loss_on)
    model, tokenizer = causal_lm_load(str(model_dir), cache_dir=tmp_path)
    trained, _ = plain_lora_train(model, tokenizer, [record], params)
    trained.eval()

    opened = [[{"role": "user", "content": "", "open": True}]]
    written = TransformersBackend(trained.merge_and_unload(), tokenizer).generate(
        opened, SamplingParams(temperature=0.0, max_new_tokens=20))[0].text
    # stage 1 with the instruction in the loss is what lets stage 2 sample instructions this way
    assert (written.strip() == record["instruction"]) == (loss_on == "record"), written


def test_plain_format_is_used_for_a_tokenizer_without_chat_template(backend):
    class NoTemplate:
        chat_template = None

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "fever"}]
    assert prompt_text(NoTemplate(), messages) == "Be brief.\n\n### Instruction:\nfever\n\n### Response:\n"


def test_the_vllm_backend_module_imports_without_vllm_installed():
    from synthesis.lm.vllm_backend import VLLMBackend

    assert callable(VLLMBackend.load) and callable(VLLMBackend.next_token_probs)


def test_a_one_letter_candidate_keeps_its_case():
    class Letters:
        """A tokenizer over single letters and their spaced forms, enough for candidate ids."""
        vocab = {"A": 1, " A": 2, "a": 3, " a": 4, "B": 5}

        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [self.vocab[text]] if text in self.vocab else []}

        def decode(self, ids):
            return {v: k for k, v in self.vocab.items()}[ids[0]]

    assert sorted(candidate_token_ids(Letters(), "A")) == [1, 2]
