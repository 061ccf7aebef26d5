"""The serving engines without Django: one class per batching strategy picked from the backend,
streamed text detokenised incrementally (and equal to the whole answer, with tokenizers whose
tokens split characters), bounded statistics, and close() freeing the model."""
import random
import threading

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from synthesis.lm.generation import Completion, SamplingParams, TransformersBackend
from synthesis.serving.detokenizer import IncrementalDetokenizer
from synthesis.serving.servers import (
    RECENT_BATCHES,
    ContinuousBatchingEngine,
    EngineClosed,
    GroupedBatchEngine,
    ServingStats,
    StreamAloneEngine,
    serving_engine_create,
)
from tests.support.tiny_model import CHAT_TEMPLATE, SPECIAL_TOKENS

TEXTS = ["Le patient a été vu à l'hôpital ; fièvre 39 °C, naïve café résumé.", "患者は頭痛があります。",
         "Take 2 tablets 💊 daily ✓ and drink water.", "Ärztin: Übelkeit, Schwindel — bitte ruhen."]


def byte_level_tokenizer() -> PreTrainedTokenizerFast:
    """GPT-2 style byte-level BPE (as SmolLM2's) with a small vocabulary, so that most non-ASCII
    characters are split over two to four tokens."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(TEXTS, trainers.BpeTrainer(
        vocab_size=320, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return _wrapped(backend)


def metaspace_tokenizer() -> PreTrainedTokenizerFast:
    """SentencePiece style ("▁word"): a token decoded alone loses the space before its word."""
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    backend.train_from_iterator(TEXTS, trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL_TOKENS))
    return _wrapped(backend)


def _wrapped(backend: Tokenizer) -> PreTrainedTokenizerFast:
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>",
                                        eos_token="<|im_end|>", bos_token="<|im_start|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def streamed(tokenizer, ids: list[int], skip_ids=()) -> list[str]:
    detokenizer = IncrementalDetokenizer(tokenizer, skip_ids=skip_ids)
    return [detokenizer.push(token) for token in ids] + [detokenizer.finish()]


@pytest.mark.parametrize("make_tokenizer", [byte_level_tokenizer, metaspace_tokenizer])
def test_streamed_pieces_join_to_the_whole_decode_where_tokens_alone_decode_wrong(make_tokenizer):
    tokenizer = make_tokenizer()
    token_by_token_wrong = 0
    for text in TEXTS:
        ids = tokenizer.encode(text, add_special_tokens=False)
        whole = tokenizer.decode(ids, skip_special_tokens=True)
        token_by_token_wrong += "".join(tokenizer.decode([token]) for token in ids) != whole
        pieces = streamed(tokenizer, ids)
        assert "".join(pieces) == whole and "\ufffd" not in "".join(pieces)
        assert sum(bool(piece) for piece in pieces[:-1]) >= min(5, len(ids) // 2)  # text comes out along the way
    assert token_by_token_wrong  # the tokenizer is one where decoding each token alone goes wrong

    rng = random.Random(0)  # what a random model samples: broken byte sequences, special tokens anywhere
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    for _ in range(200):
        ids = [rng.randrange(len(tokenizer)) for _ in range(rng.randrange(1, 30))]
        assert "".join(streamed(tokenizer, ids, skip_ids=[eos])) == tokenizer.decode(
            [token for token in ids if token != eos], skip_special_tokens=True)


def test_a_window_is_decoded_per_token_not_the_whole_answer():
    tokenizer = byte_level_tokenizer()
    decoded_lengths = []
    decode = tokenizer.decode
    tokenizer.decode = lambda ids, **options: decoded_lengths.append(len(ids)) or decode(ids, **options)
    ids = tokenizer.encode(" ".join(TEXTS) * 4, add_special_tokens=False)
    "".join(streamed(tokenizer, ids))
    assert len(ids) > 400 and max(decoded_lengths) <= 12  # a character's tokens and the piece before, at most


@pytest.fixture(scope="module")
def byte_model():
    """A tiny random Llama over the byte-level tokenizer: sampled at temperature 1 it emits
    arbitrary byte tokens, half characters included."""
    tokenizer = byte_level_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.bos_token_id, tie_word_embeddings=True, initializer_range=0.2)
    return LlamaForCausalLM(config).eval(), tokenizer


@pytest.mark.parametrize("uses_engine", [True, False], ids=["continuous", "stream-alone"])
def test_a_stream_joins_to_its_completion_on_each_transformers_engine(byte_model, uses_engine):
    model, tokenizer = byte_model
    engine = serving_engine_create(TransformersBackend(model, tokenizer, engine=uses_engine))
    assert type(engine) is (ContinuousBatchingEngine if uses_engine else StreamAloneEngine)
    sampling = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=24)
    split_characters = 0
    for question in TEXTS:
        *pieces, completion = engine.stream([{"role": "user", "content": question}], sampling)
        assert isinstance(completion, Completion) and all(isinstance(piece, str) for piece in pieces)
        assert "".join(pieces) == completion.text
        split_characters += "\ufffd" in completion.text or any(ord(c) > 127 for c in completion.text)
    assert split_characters  # the model did emit bytes of characters, which is what the test is about
    engine.close()


class FakeBackend:
    """A backend with `generate` only (as vLLM's): answers "echo: <last message>"."""

    def __init__(self):
        self.batches: list[int] = []
        self.closed = False

    def generate(self, prompts, sampling):
        self.batches.append(len(prompts))
        return [Completion(text=f"echo: {p[-1]['content']}", prompt_tokens=3, completion_tokens=2, finish_reason="stop")
                for p in prompts]

    def close(self):
        self.closed = True


def test_the_factory_picks_one_engine_class_per_backend(byte_model):
    model, tokenizer = byte_model
    engines = [serving_engine_create(TransformersBackend(model, tokenizer)),
               serving_engine_create(TransformersBackend(model, tokenizer, engine=False)),
               serving_engine_create(FakeBackend())]
    assert [type(engine) for engine in engines] == [ContinuousBatchingEngine, StreamAloneEngine, GroupedBatchEngine]
    for engine in engines:
        engine.close()


def test_grouped_batches_answer_waiting_requests_together_and_close_frees_the_model():
    backend = FakeBackend()
    engine = serving_engine_create(backend)
    barrier = threading.Barrier(6)
    answers = [None] * 6

    def ask(index: int) -> None:
        barrier.wait()
        answers[index] = engine.complete([{"role": "user", "content": str(index)}], SamplingParams(temperature=0))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.text for a in answers] == [f"echo: {i}" for i in range(6)]
    assert engine.stats.largest_batch > 1 and engine.stats.batches == len(backend.batches)
    assert [piece for piece in engine.stream([{"role": "user", "content": "s"}], SamplingParams())][0] == "echo: s"

    engine.close()
    assert backend.closed and engine.closed
    with pytest.raises(EngineClosed):
        engine.submit([{"role": "user", "content": "late"}], SamplingParams())


def test_closing_the_continuous_engine_fails_its_running_stream_and_frees_the_model(byte_model):
    model, tokenizer = byte_model
    endless = TransformersBackend(model, tokenizer)
    endless.eos_ids = [-1]  # only close() ends it before 400 tokens
    engine = serving_engine_create(endless)
    stream = engine.stream([{"role": "user", "content": "fever"}], SamplingParams(temperature=1.0, max_new_tokens=400))
    while not next(stream):
        pass
    engine.close()
    with pytest.raises(EngineClosed):
        for _ in stream:
            pass
    assert endless.model is None and not engine.decode_engine.busy
    assert engine.decode_engine.stats.decode_tokens < 400


def test_batch_statistics_stay_bounded_and_keep_their_totals():
    stats = ServingStats()
    for size in range(1, 3 * RECENT_BATCHES + 1):
        stats.record(size % 7 + 1)
    assert len(stats.recent) == RECENT_BATCHES and stats.batches == 3 * RECENT_BATCHES
    assert stats.largest_batch == 7 and stats.mean_batch == pytest.approx(stats.requests / stats.batches)
