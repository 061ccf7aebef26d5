"""Text generation behind one interface, for sampling synthetic instructions and judging them.

Two backends share the request types (requests.py) and the same two calls:
  - `generate(prompts, sampling, on_completion=...)`: one Completion per chat prompt;
  - `next_token_probs(prompts, candidates)`: P(next token) of candidate words, for a yes/no judge.
`TransformersBackend` (this module) runs anywhere, CPU or GPU; `VLLMBackend` (vllm_backend.py)
needs CUDA and the `gpu` extra. `backend_choose` / `backend_load` (backends.py) pick one for the machine.

A prompt is a list of chat messages `[{"role": "system"|"user"|"assistant", "content": str}]`,
rendered with the tokenizer's chat template and the generation prompt (assistant turn opened);
a last message `{"role": "user", "content": "", "open": True}` opens the user's turn instead
(synthesis.lm.chat.user_turn_text: stage 2 samples instructions that way).
"""
import gc
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import torch

from .engine import DecodeEngine, EngineError
from .loader import causal_lm_load, fast_dtype
# the request types, imported here too because callers know them as generation.SamplingParams etc.
from .requests import (Completion, GenerationError, Prompt, SamplingParams, adapter_dir_check,  # noqa: F401
                       batch_seed, batches_plan, candidate_token_ids, is_int, prompt_token_ids, prompts_validate)

MAX_AUTO_BATCH_SIZE = 64
# The continuous-batching engine keeps more sequences running: a decode step's matrix products
# only get efficient on the CPU from about a hundred rows (docs/PERFORMANCE.md).
MAX_ENGINE_SEQUENCES = 128
# The shortest common prompt prefix worth computing once and sharing.
MIN_SHARED_PREFIX = 16
# Share of the free memory the automatic batch size may plan to use; the rest is headroom for the
# allocator, other workers on the machine and the estimate's own error.
MEMORY_SHARE = 0.5


# --- the transformers backend ----------------------------------------------------------------

class TransformersBackend:
    """Batched generation with Hugging Face transformers (left padding, KV cache), CPU or GPU."""

    def __init__(self, model, tokenizer, *, max_batch_size: int | None = None, engine: bool = True):
        if max_batch_size is not None and (not is_int(max_batch_size) or max_batch_size < 1):
            raise GenerationError(f"max_batch_size must be a positive integer or None, got {max_batch_size!r}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        configured = configured if isinstance(configured, list) else [configured]
        self.eos_ids = sorted({i for i in configured + [tokenizer.eos_token_id] if i is not None})
        # The continuous-batching engine (synthesis/engine.py) where the model has the Llama
        # layout; `model.generate` otherwise, or when engine=False (the reference path).
        self.engine_unsupported = DecodeEngine.unsupported(model) if engine else "engine=False"
        self.last_engine: DecodeEngine | None = None  # the latest generate call's, for its stats

    @property
    def uses_engine(self) -> bool:
        return self.engine_unsupported is None

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @classmethod
    def load(cls, *, model_spec: str, adapter_path: Path | None, cache_dir: Path, dtype: torch.dtype | None = None,
             max_batch_size: int | None = None, engine: bool = True) -> "TransformersBackend":
        """Load `model_spec` (see synthesis.lm.loader) and apply the LoRA adapter when given. The
        adapter is merged into the weights: the same outputs, without LoRA matmuls per token.
        dtype None takes the machine's fast dtype (synthesis.lm.loader.fast_dtype)."""
        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = dtype or fast_dtype(device)
        model, tokenizer = causal_lm_load(model_spec, cache_dir=cache_dir, dtype=dtype)
        if adapter_path is not None:
            from peft import PeftModel  # deferred: only an adapter needs peft

            model = PeftModel.from_pretrained(model, str(adapter_dir_check(adapter_path))).merge_and_unload()
        if device == "cuda":
            model = model.to("cuda")
        return cls(model, tokenizer, max_batch_size=max_batch_size, engine=engine)

    def generate(self, prompts: list[Prompt], sampling: SamplingParams, *,
                 on_completion: Callable[[int, Completion], None] | None = None, streamer=None) -> list[Completion]:
        """One Completion per prompt, in input order. Prompts run in batches of similar length;
        `on_completion(index, completion)` is called for each prompt as its batch finishes.
        Repeatable: the same prompts, SamplingParams and batch size give the same texts.
        `streamer` (transformers' streamer interface) receives the tokens of a single prompt."""
        prompts_validate(prompts)
        if streamer is not None and len(prompts) != 1:
            raise GenerationError("a streamer follows one prompt; stream prompts one at a time")
        encoded = [prompt_token_ids(self.tokenizer, messages) for messages in prompts]
        lengths = [len(ids) for ids in encoded]
        results: list[Completion | None] = [None] * len(prompts)
        if self.uses_engine and streamer is None:
            return self._engine_generate(encoded, sampling, on_completion)
        batch_size = self.batch_size(max(lengths, default=1), sampling.max_new_tokens)
        for batch in batches_plan(lengths, batch_size):
            completions = self._generate_batch([encoded[i] for i in batch], sampling, seed=batch_seed(sampling.seed, batch[0]),
                                               streamer=streamer)
            for index, completion in zip(batch, completions):
                results[index] = completion
                if on_completion is not None:
                    on_completion(index, completion)
        return results

    def engine_create(self, *, prompt_length: int, max_new_tokens: int, max_sequences: int | None = None) -> DecodeEngine:
        """A DecodeEngine on this model, with as many slots as fit (batch_size, up to
        MAX_ENGINE_SEQUENCES) for prompts of about prompt_length tokens."""
        if not self.uses_engine:
            raise GenerationError(f"the continuous-batching engine cannot run this model: {self.engine_unsupported}")
        slots = max_sequences or self.batch_size(prompt_length, max_new_tokens, cap=MAX_ENGINE_SEQUENCES)
        return DecodeEngine(self.model, eos_ids=self.eos_ids, max_sequences=slots)

    def _engine_start(self, encoded: list[list[int]], *, max_new_tokens: int) -> DecodeEngine:
        """An engine for these prompts (kept as last_engine), their shared prefixes computed once."""
        engine = self.last_engine = self.engine_create(prompt_length=max(len(ids) for ids in encoded),
                                                       max_new_tokens=max_new_tokens)
        for prefix in shared_prefixes(encoded):
            engine.prefix_share(prefix)
        return engine

    def _engine_generate(self, encoded: list[list[int]], sampling: SamplingParams,
                         on_completion: Callable[[int, Completion], None] | None) -> list[Completion]:
        """generate() on the engine: every prompt queued at once (longest first), each with its own
        random generator seeded by batch_seed(seed, index), so a prompt's text depends on the
        request, not on the batch around it; on_completion is called as each one finishes."""
        results: list[Completion | None] = [None] * len(encoded)
        if not encoded:
            return []
        lengths = [len(ids) for ids in encoded]
        engine = self._engine_start(encoded, max_new_tokens=sampling.max_new_tokens)
        with _as_generation_error():
            for index in batches_plan(lengths, len(encoded))[0]:
                engine.add(encoded[index], temperature=sampling.temperature, top_p=sampling.top_p,
                           max_new_tokens=sampling.max_new_tokens, seed=batch_seed(sampling.seed, index), tag=index)
        while engine.busy:
            for sequence in engine.step():
                completion = results[sequence.tag] = self.completion(sequence.generated, sequence.prompt_length)
                if on_completion is not None:
                    on_completion(sequence.tag, completion)
        engine.release_memory()
        return results

    def _generate_batch(self, encoded: list[list[int]], sampling: SamplingParams, *, seed: int,
                        streamer=None) -> list[Completion]:
        input_ids, attention_mask = self._left_pad(encoded)
        options = dict(do_sample=sampling.temperature > 0, max_new_tokens=sampling.max_new_tokens,
                       top_k=0,  # no top-k cut (transformers' default is 50; vLLM's is none)
                       pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.eos_ids, streamer=streamer)
        if sampling.temperature > 0:
            options.update(temperature=sampling.temperature, top_p=sampling.top_p)
        devices = [self.model.device.index or 0] if self.model.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.inference_mode():  # leave the caller's RNG alone
            torch.manual_seed(seed)
            output = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **options)
        return [self.completion(row.tolist(), len(ids)) for row, ids in zip(output[:, input_ids.shape[1]:], encoded)]

    def completion(self, generated: list[int], prompt_tokens: int) -> Completion:
        """The Completion of `generated` token ids (up to and with the first EOS token, if any)."""
        eos = set(self.eos_ids)
        stop_at = next((position for position, token in enumerate(generated) if token in eos), None)
        tokens = generated if stop_at is None else generated[:stop_at]
        return Completion(
            text=self.tokenizer.decode(tokens, skip_special_tokens=True),
            prompt_tokens=prompt_tokens,
            completion_tokens=len(generated) if stop_at is None else stop_at + 1,
            finish_reason="length" if stop_at is None else "stop",
        )

    def next_token_probs(self, prompts: list[Prompt], candidates: list[str]) -> list[dict[str, float]]:
        """For each prompt, {candidate: P(the reply starts with it)}: the softmax over the full
        vocabulary at the first reply position, summed over the candidate's first-token ids
        (see candidate_token_ids). A probability in [0, 1]; candidates sharing a first token
        each get its whole probability."""
        prompts_validate(prompts)
        token_ids = {word: candidate_token_ids(self.tokenizer, word) for word in candidates}
        encoded = [prompt_token_ids(self.tokenizer, messages) for messages in prompts]
        lengths = [len(ids) for ids in encoded]
        results: list[dict[str, float] | None] = [None] * len(prompts)

        def probabilities(probs: torch.Tensor) -> dict[str, float]:
            return {word: float(probs[ids].sum()) if ids else 0.0 for word, ids in token_ids.items()}

        if self.uses_engine and prompts:
            # no padding, prompts flattened; the distribution after each prompt is kept, nothing sampled
            engine = self._engine_start(encoded, max_new_tokens=1)
            with _as_generation_error():
                for index, ids in enumerate(encoded):
                    engine.add(ids, temperature=0, top_p=1, max_new_tokens=1, seed=0, tag=index, keep_probs=True)
            while engine.busy:
                for sequence in engine.step():
                    results[sequence.tag] = probabilities(sequence.probs)
            engine.release_memory()
            return results
        for batch in batches_plan(lengths, self.batch_size(max(lengths, default=1), 1)):
            input_ids, attention_mask = self._left_pad([encoded[i] for i in batch])
            # Left padding shifts the tokens right; positions must still count from each prompt's start.
            position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
            with torch.inference_mode():
                logits = self.model(input_ids=input_ids, attention_mask=attention_mask,
                                    position_ids=position_ids, logits_to_keep=1).logits[:, -1]
            probs = torch.softmax(logits.float(), dim=-1).cpu()
            for row, index in enumerate(batch):
                results[index] = probabilities(probs[row])
        return results

    def _left_pad(self, encoded: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        longest = max(len(ids) for ids in encoded)
        input_ids = torch.full((len(encoded), longest), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(encoded), longest), dtype=torch.long)
        for row, ids in enumerate(encoded):
            if ids:
                input_ids[row, longest - len(ids):] = torch.tensor(ids)
                attention_mask[row, longest - len(ids):] = 1
        return input_ids.to(self.model.device), attention_mask.to(self.model.device)

    def batch_size(self, prompt_length: int, max_new_tokens: int, *, cap: int = MAX_AUTO_BATCH_SIZE) -> int:
        """max_batch_size if set, else how many sequences of prompt_length + max_new_tokens tokens
        fit in MEMORY_SHARE of the free memory, by sequence_bytes_estimate; in [1, cap]."""
        if self.max_batch_size is not None:
            return self.max_batch_size
        per_sequence = sequence_bytes_estimate(self.model, prompt_length=prompt_length, max_new_tokens=max_new_tokens)
        fitting = int(MEMORY_SHARE * free_memory_bytes(self.model.device) // per_sequence)
        return max(1, min(cap, fitting))

    def close(self) -> None:
        """Free the model (and the GPU memory it held)."""
        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


@contextmanager
def _as_generation_error():
    """The engine's refusals (a prompt too long for the model, say) as GenerationError, which
    callers handle: the pipeline fails the stage with it, serving answers 400."""
    try:
        yield
    except EngineError as error:
        raise GenerationError(str(error)) from None


def shared_prefixes(encoded: list[list[int]], *, minimum: int = MIN_SHARED_PREFIX) -> list[list[int]]:
    """Prefixes worth computing once: for each group of at least two prompts that agree on their
    first `minimum` tokens (a system prompt and chat template, say), the group's common prefix."""
    groups: dict[tuple[int, ...], list[list[int]]] = {}
    for ids in encoded:
        if len(ids) > minimum:
            groups.setdefault(tuple(ids[:minimum]), []).append(ids)
    return [common_prefix(group) for group in groups.values() if len(group) > 1]


def common_prefix(encoded: list[list[int]]) -> list[int]:
    """The longest token prefix every prompt starts with (shorter than the shortest prompt)."""
    if not encoded:
        return []
    first, length = encoded[0], min(len(ids) for ids in encoded) - 1
    for ids in encoded[1:]:
        length = next((i for i in range(length) if ids[i] != first[i]), length)
    return first[:max(length, 0)]


def sequence_bytes_estimate(model, *, prompt_length: int, max_new_tokens: int) -> int:
    """Bytes one more sequence in a batch costs, in three parts (the weights are loaded already
    and shared by the batch, so they are not counted; only what grows with batch size is):
      - KV cache: 2 (K and V) x layers x kv_heads x head_dim x element size, per token, for
        prompt_length + max_new_tokens tokens;
      - prefill activations: prompt_length x (intermediate_size + heads x prompt_length) float32
        values (the MLP's widest tensor and one layer's attention scores; layers run one at a time);
      - logits: vocab_size float32 values for the last position, twice (logits and softmax).
    A rough upper bound, meant to keep an automatic batch size safe, not to be exact."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    element = next(model.parameters()).element_size()
    intermediate = getattr(config, "intermediate_size", None) or 4 * config.hidden_size
    kv_cache = 2 * config.num_hidden_layers * kv_heads * head_dim * element * (prompt_length + max_new_tokens)
    prefill = 4 * prompt_length * (intermediate + heads * prompt_length)
    logits = 2 * 4 * config.vocab_size
    return kv_cache + prefill + logits


def free_memory_bytes(device: torch.device) -> int:
    """Free memory where the model runs, in bytes: the GPU's free memory, or the machine's
    available physical pages on Linux (os.sysconf; psutil is not a dependency). 4 GiB when the
    platform reports neither."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 4 * 2 ** 30
