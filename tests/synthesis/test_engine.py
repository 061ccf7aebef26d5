"""The continuous-batching engine against `model.generate`, on tiny models built from configs (fp32)."""
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM
from transformers.generation.logits_process import TopPLogitsWarper

from synthesis.lm.engine import DecodeEngine, EngineError
from synthesis.lm.generation import SamplingParams, TransformersBackend
from synthesis.lm.sampling import tokens_sample
from tests.support.tiny_model import tiny_model_dir

VOCAB, EOS = 96, 2
FAMILIES = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM),
            "qwen3": (Qwen3Config, Qwen3ForCausalLM)}


def tiny(family: str, seed: int = 0):
    config_class, model_class = FAMILIES[family]
    torch.manual_seed(seed)
    config = config_class(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=256,
                          eos_token_id=EOS, pad_token_id=0, bos_token_id=1, tie_word_embeddings=True,
                          initializer_range=0.3)
    return model_class(config).eval()


def prompts(count: int, seed: int = 0, shortest: int = 3, longest: int = 40) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(shortest, longest + 1, (count,), generator=generator).tolist()
    return [torch.randint(3, VOCAB, (n,), generator=generator).tolist() for n in lengths]


def reference_greedy(model, prompt: list[int], max_new_tokens: int) -> list[int]:
    """model.generate on one prompt alone: no padding, the plain path."""
    with torch.inference_mode():
        out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                             max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=EOS, pad_token_id=0)
    return out[0, len(prompt):].tolist()


def engine_run(engine: DecodeEngine, batch: list[list[int]], **sampling) -> list[list[int]]:
    options = dict(temperature=0.0, top_p=1.0, max_new_tokens=12, seed=0) | sampling
    sequences = [engine.add(prompt, **(options | {"seed": options["seed"] + index}))
                 for index, prompt in enumerate(batch)]
    engine.run()
    assert all(s.done for s in sequences) and not engine.busy
    return [s.generated for s in sequences]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_greedy_tokens_equal_generate_while_sequences_join_leave_and_prefill_in_chunks(family):
    model = tiny(family)
    batch = prompts(10)
    # 3 slots for 10 prompts: sequences leave and others join mid-run; 16-token steps split every
    # longer prompt's prefill into chunks, some beside decoding sequences
    engine = DecodeEngine(model, eos_ids=[EOS], max_sequences=3, step_tokens=16)

    got = engine_run(engine, batch)

    assert got == [reference_greedy(model, prompt, 12) for prompt in batch]
    assert engine.stats.max_running == 3 and engine.stats.steps > 12


def test_the_cache_grows_past_its_first_blocks_keeping_what_it_holds():
    model = tiny("llama")
    prefix = prompts(1, seed=21, shortest=70, longest=70)[0]  # its keys are kept apart from the slots'
    batch = prompts(3, seed=22, shortest=60, longest=150) + [prefix + tail for tail in prompts(3, seed=23, longest=90)]
    engine = DecodeEngine(model, eos_ids=[EOS], max_sequences=3, step_tokens=32)
    engine.prefix_share(prefix)

    got = engine_run(engine, batch, max_new_tokens=30)

    assert got == [reference_greedy(model, prompt, 30) for prompt in batch]
    assert engine.cache.capacity >= 3  # blocks of 64: grown, live blocks copied, while prompts were prefilled


def test_a_generated_end_of_sequence_stops_a_sequence_and_counts():
    model = tiny("llama")
    batch = prompts(30, seed=3)
    expected = [reference_greedy(model, prompt, 20) for prompt in batch]
    stopped = [tokens for tokens in expected if EOS in tokens]
    assert stopped, "no prompt of this seed reaches EOS; pick another seed"

    got = engine_run(DecodeEngine(model, eos_ids=[EOS], max_sequences=8), batch, max_new_tokens=20)

    for tokens, want in zip(got, expected):
        assert tokens == (want[:want.index(EOS) + 1] if EOS in want else want)


def test_a_shared_prefix_is_computed_once_and_gives_the_same_tokens():
    model = tiny("llama")
    prefix = prompts(1, seed=5, shortest=20, longest=20)[0]
    batch = [prefix + tail for tail in prompts(6, seed=6, shortest=1, longest=15)]
    plain = engine_run(DecodeEngine(model, eos_ids=[EOS], max_sequences=4), batch)
    engine = DecodeEngine(model, eos_ids=[EOS], max_sequences=4)
    engine.prefix_share(prefix)

    shared = engine_run(engine, batch)

    assert shared == plain == [reference_greedy(model, prompt, 12) for prompt in batch]
    assert engine.stats.prefix_hits == 6
    assert engine.stats.prefill_tokens == sum(len(p) for p in batch) - 6 * len(prefix) + len(prefix)


def test_prompts_of_two_prefixes_one_inside_the_other_and_of_none_decode_together_unchanged():
    model = tiny("qwen3")
    short = prompts(1, seed=11, shortest=12, longest=12)[0]
    longer = short + prompts(1, seed=12, shortest=10, longest=10)[0]  # starts with `short`
    batch = [head + tail for head in (short, longer, []) for tail in prompts(4, seed=13, shortest=2, longest=9)]
    engine = DecodeEngine(model, eos_ids=[EOS], max_sequences=5, step_tokens=8)  # joins, leaves, split prompts
    engine.prefix_share(short)
    engine.prefix_share(longer)  # computed on top of `short`

    got = engine_run(engine, batch)

    assert got == [reference_greedy(model, prompt, 12) for prompt in batch]
    assert engine.stats.prefix_hits == 8 + 1  # the 8 prompts, and `longer` itself on `short`


def test_no_cross_talk_a_sampled_sequence_is_the_same_alone_and_among_others():
    model = tiny("llama")
    target, others = prompts(1, seed=7)[0], prompts(7, seed=8)
    options = dict(temperature=1.0, top_p=0.9, max_new_tokens=16)
    alone = DecodeEngine(model, eos_ids=[EOS], max_sequences=8)
    crowded = DecodeEngine(model, eos_ids=[EOS], max_sequences=3, step_tokens=8)
    one = alone.add(target, seed=42, **options)
    alone.run()

    for index, prompt in enumerate(others[:4]):
        crowded.add(prompt, seed=index, **options)
    mine = crowded.add(target, seed=42, **options)  # joins when a slot frees, beside the others
    for index, prompt in enumerate(others[4:]):
        crowded.add(prompt, seed=10 + index, **options)
    crowded.run()

    assert mine.generated == one.generated
    changed = DecodeEngine(model, eos_ids=[EOS], max_sequences=8)
    other_seed = changed.add(target, seed=43, **options)
    changed.run()
    assert other_seed.generated != one.generated


def test_the_nucleus_is_transformers_top_p_and_draws_follow_its_renormalised_probabilities():
    torch.manual_seed(0)
    logits = torch.randn(3, 5000) * torch.tensor([[4.0], [0.5], [0.05]])  # peaked, flat, nearly uniform
    temperatures, top_ps = [0.9, 1.3, 1.0], [0.8, 0.95, 0.5]
    generators = [torch.Generator().manual_seed(row) for row in range(3)]
    draws = 4000
    counts = torch.zeros(3, 5000)
    for _ in range(draws):  # the flat rows need more than the top 64 and the top 1024 tokens
        for row, token in enumerate(tokens_sample(logits, temperatures=temperatures, top_ps=top_ps,
                                                  generators=generators)):
            counts[row, token] += 1

    for row in range(3):
        warped = TopPLogitsWarper(top_p=top_ps[row])(None, logits[row:row + 1] / temperatures[row])[0]
        allowed = torch.isfinite(warped)
        assert counts[row][~allowed].sum() == 0, "a token outside the nucleus was drawn"
        expected = torch.softmax(warped, dim=-1)
        frequent = expected > 0.02
        observed = counts[row] / draws
        sigma = (expected * (1 - expected) / draws).sqrt()
        assert ((observed - expected).abs()[frequent] < 5 * sigma[frequent] + 1e-9).all()
        assert allowed.sum() > (1 if row == 0 else 1024)  # row 0 covers its peak, rows 1-2 escalate


def reference_nucleus_draw(probs: torch.Tensor, top_p: float, u: float) -> int:
    """The textbook nucleus draw: sort the whole row, keep the tokens whose mass before them is
    below top_p, pick by the uniform u over their cumulative mass (float64)."""
    values, order = probs.double().sort(descending=True)
    cumulative = values.cumsum(0)
    keep = max(int(((cumulative - values) < top_p).sum()), 1)
    picked = int(torch.searchsorted(cumulative[:keep], u * cumulative[keep - 1], right=True))
    return int(order[min(picked, keep - 1)])


def test_the_nucleus_found_among_thresholded_candidates_is_the_whole_sort_at_every_threshold():
    from synthesis.lm.sampling import MASS_MARGIN, THRESHOLDS, nucleus_draw

    torch.manual_seed(1)
    vocab = 120_000
    # peaked rows (nucleus above 1e-3), flatter ones (1e-4, 1e-5) and a nearly uniform one whose
    # nucleus lies below every fixed threshold (1 / 120,000 < 1e-5), all in one call
    scales = torch.tensor([[6.0], [4.0], [3.0], [1.5], [1.0], [0.02]])
    probs = torch.softmax(torch.randn(len(scales), vocab) * scales, dim=-1)
    top_ps = [0.9, 0.9, 0.9, 0.6, 0.95, 0.7]
    levels = [next((t for t in THRESHOLDS if probs[row][probs[row] >= t].sum() >= top_ps[row] + MASS_MARGIN), None)
              for row in range(len(scales))]
    assert set(levels) == {*THRESHOLDS, None}, f"the rows should need every threshold and the fallback: {levels}"

    for draw in range(25):
        generators = [torch.Generator().manual_seed(100 * draw + row) for row in range(len(scales))]
        uniforms = [float(torch.rand((), generator=torch.Generator().manual_seed(100 * draw + row), dtype=torch.float64))
                    for row in range(len(scales))]
        got = nucleus_draw(probs, top_ps, generators)
        want = [reference_nucleus_draw(probs[row], top_ps[row], uniforms[row]) for row in range(len(scales))]
        # the same place in the sorted row (tokens of exactly equal probability may swap places)
        assert [float(probs[row, token]) for row, token in enumerate(got)] == \
            [float(probs[row, token]) for row, token in enumerate(want)]


def test_top_p_one_draws_from_the_whole_distribution():
    torch.manual_seed(2)
    logits = torch.randn(1, 50) * 2
    generators = [torch.Generator().manual_seed(5)]
    draws = 20_000
    counts = torch.zeros(50)
    for _ in range(draws):
        counts[tokens_sample(logits, temperatures=[0.7], top_ps=[1.0], generators=generators)[0]] += 1

    expected = torch.softmax(logits[0] / 0.7, dim=-1)
    sigma = (expected * (1 - expected) / draws).sqrt()
    assert ((counts / draws - expected).abs() < 5 * sigma + 1e-4).all()
    assert (counts > 0).sum() > 25  # the tail is drawn too, not only a nucleus


def test_greedy_rows_take_the_argmax_beside_sampled_rows():
    logits = torch.tensor([[0.0, 3.0, 1.0], [5.0, 0.0, 0.0]])
    tokens = tokens_sample(logits, temperatures=[0.0, 1.0], top_ps=[1.0, 0.5],
                           generators=[torch.Generator(), torch.Generator().manual_seed(1)])
    assert tokens == [1, 0]


def test_a_prompt_longer_than_the_model_allows_is_refused_saying_what_to_change():
    engine = DecodeEngine(tiny("llama"), eos_ids=[EOS])
    with pytest.raises(EngineError, match="exceeds the model's 256 positions"):
        engine.add(list(range(3, 250)), temperature=0, top_p=1, max_new_tokens=10, seed=0)
    with pytest.raises(EngineError, match="at least one token"):
        engine.add([], temperature=0, top_p=1, max_new_tokens=10, seed=0)


def test_a_cancelled_sequence_frees_its_slot_and_the_rest_finish_unchanged():
    model = tiny("llama")
    batch = prompts(4, seed=9)
    engine = DecodeEngine(model, eos_ids=[EOS], max_sequences=2)
    sequences = [engine.add(p, temperature=0, top_p=1, max_new_tokens=12, seed=0) for p in batch]
    engine.step()
    engine.step()
    engine.cancel(sequences[0])
    engine.run()
    assert sequences[0].finish_reason == "cancelled"
    assert [s.generated for s in sequences[1:]] == [reference_greedy(model, p, 12) for p in batch[1:]]


def test_models_without_the_llama_layout_are_refused_with_the_reason():
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=1, n_head=2))
    assert "gpt2" in DecodeEngine.unsupported(gpt2)
    with pytest.raises(EngineError, match="not one of"):
        DecodeEngine(gpt2, eos_ids=[EOS])


# --- through the backend, on a tiny model with a tokenizer ----------------------------------------

QUESTIONS = ["fever", "the patient has a headache and a cough", "a doctor gives water",
             "Is this about medicine ? Answer yes or no .", "cough and sleep and fever and water"]


@pytest.fixture(scope="module")
def backends(tmp_path_factory):
    directory = tiny_model_dir(tmp_path_factory.mktemp("tiny"), QUESTIONS)
    cache = tmp_path_factory.mktemp("cache")
    fast = TransformersBackend.load(model_spec=str(directory), adapter_path=None, cache_dir=cache, dtype=torch.float32)
    plain = TransformersBackend.load(model_spec=str(directory), adapter_path=None, cache_dir=cache,
                                     dtype=torch.float32, engine=False)
    assert fast.uses_engine and not plain.uses_engine
    return fast, plain


def chat(text: str) -> list[dict]:
    system = "Answer the question about medicine ; a doctor gives water and sleep for a fever and a cough ."
    return [{"role": "system", "content": system}, {"role": "user", "content": text}]


def test_the_backend_on_the_engine_gives_generates_greedy_texts_and_token_counts(backends):
    fast, plain = backends
    greedy = SamplingParams(temperature=0.0, max_new_tokens=10)
    batch = [chat(q) for q in QUESTIONS]
    seen = []

    got = fast.generate(batch, greedy, on_completion=lambda index, completion: seen.append(index))

    assert got == plain.generate(batch, greedy)
    assert sorted(seen) == list(range(len(QUESTIONS)))
    assert fast.last_engine.stats.prefix_hits == len(QUESTIONS)  # the system turn is shared


def test_the_backend_on_the_engine_gives_the_same_judge_probabilities(backends):
    fast, plain = backends
    batch = [chat(q) for q in QUESTIONS]
    for got, want in zip(fast.next_token_probs(batch, ["yes", "no"]), plain.next_token_probs(batch, ["yes", "no"])):
        assert got.keys() == want.keys()
        for word in got:
            assert got[word] == pytest.approx(want[word], abs=1e-5)


def test_sampled_texts_on_the_engine_depend_on_the_seed_not_on_the_batch(backends):
    fast, _ = backends
    sampling = SamplingParams(temperature=1.0, top_p=0.9, max_new_tokens=10, seed=3)
    batch = [chat(q) for q in QUESTIONS]
    together = fast.generate(batch, sampling)
    again = fast.generate(batch, sampling)
    assert together == again
    assert fast.generate(batch, SamplingParams(temperature=1.0, top_p=0.9, max_new_tokens=10, seed=4)) != together


def test_a_serving_stream_whose_reader_goes_away_is_cancelled_and_others_finish(backends):
    import time

    from synthesis.serving.servers import serving_engine_create

    fast, _ = backends
    endless = TransformersBackend(fast.model, fast.tokenizer)
    endless.eos_ids = [-1]  # never stops by itself: only a cancel ends the stream before 400 tokens
    serving = serving_engine_create(endless)
    other = serving.submit(chat(QUESTIONS[0]), SamplingParams(temperature=0.0, max_new_tokens=8))
    stream = serving.stream(chat(QUESTIONS[1]), SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=400))
    assert isinstance(next(stream), str)
    stream.close()  # the client went away

    assert other.result(timeout=60).completion_tokens == 8
    deadline = time.monotonic() + 30
    while (serving.decode_engine.busy or not serving.decode_engine.stats.cancelled) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert serving.decode_engine.stats.cancelled == 1 and not serving.decode_engine.busy
    assert serving.decode_engine.stats.decode_tokens < 400 + 8


def test_a_prompt_too_long_for_the_model_is_a_generation_error_from_the_backend(backends):
    from synthesis.lm.generation import GenerationError

    fast, _ = backends
    too_long = [chat(" ".join(["fever"] * 600))]
    with pytest.raises(GenerationError, match="exceeds the model's 512 positions"):
        fast.generate(too_long, SamplingParams(temperature=0.0, max_new_tokens=4))
    with pytest.raises(GenerationError, match="exceeds the model's 512 positions"):
        fast.next_token_probs(too_long, ["yes"])
