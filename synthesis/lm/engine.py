"""Continuous batching for Llama-family models: the fast path of the transformers backend.

`model.generate` runs a batch in lock step: prompts are left-padded to the longest, every row
computes on its padding, and a finished row keeps its place until the longest row ends. Here the
tokens of every running sequence are flattened into one matrix per step instead:

  - a step feeds each decoding sequence's newest token, plus prompt chunks of waiting sequences
    up to `step_tokens` tokens in all (chunked prefill), so the projections and the MLP always
    see a tall matrix and nothing is computed for padding;
  - a sequence leaves the moment it ends (EOS or its max_new_tokens) and a waiting one takes its
    slot in the next step;
  - keys and values live in a block cache per layer (`kv_cache.BlockCache`: blocks of 64
    positions of every slot), kept compact (the running sequences hold slots 0..n-1) so a
    decode step's attention reads views of it, not gathered copies, each block only up to the
    last slot that reaches into it;
  - logits are computed only where a token is sampled (the last position of each sequence);
  - a prompt prefix shared by many prompts (a system turn) can be computed once (`prefix_share`):
    its keys and values are kept once, a prompt that starts with it caches only its own
    positions, and a decode step reads the prefix once for all its rows
    (`attention.cascade_attention`).

Sampling is per sequence: its own temperature, top_p, max_new_tokens and random generator
(seeded from the request's seed and the prompt's index), so a prompt's text does not depend on
what else runs in its batch, except through the rounding of a wider matrix product.
Top-p is exact (`sampling.tokens_sample`): the nucleus is found among the tokens above a
probability threshold that holds top_p of the mass, without sorting whole rows; top_p 1 draws
from the whole distribution directly.

Supported: decoder layers with the Llama layout (`self_attn.{q,k,v,o}_proj`, the two RMS norms,
`mlp`, a shared `rotary_emb`), no sliding window: model types llama, qwen2, qwen3. Other models
use `model.generate` (`DecodeEngine.unsupported` says why).
"""
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from synthesis.lm.attention import cascade_attention, decode_mask, rotate_half
from synthesis.lm.fused import fused_projections
from synthesis.lm.kv_cache import BlockCache
from synthesis.lm.sampling import tokens_sample

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "qwen3")


class EngineError(ValueError):
    """A request the engine cannot run; the message says what to change."""


@dataclass(eq=False)
class Sequence:
    """One prompt being answered. `tokens` is the prompt followed by what was generated;
    `cached` counts the leading tokens whose keys and values are in the cache."""

    prompt_length: int
    tokens: list[int]
    temperature: float
    top_p: float
    max_new_tokens: int
    generator: torch.Generator
    on_token: Callable[["Sequence", int], None] | None = None
    slot: int = -1
    cached: int = 0
    prefix: tuple | None = None  # the shared prefix (engine.prefixes entry) the prompt starts with
    finish_reason: str | None = None  # "stop" (EOS sampled), "length" or "cancelled"
    tag: object = None  # the caller's, returned untouched
    keep_probs: bool = False  # keep the next-token distribution of the first sampled position
    probs: torch.Tensor | None = None  # [vocab] float32 softmax at temperature 1, when keep_probs

    @property
    def base(self) -> int:
        """The shared prefix's length: the cache holds positions base.. of this sequence, at index - base."""
        return len(self.prefix[0]) if self.prefix is not None else 0

    @property
    def generated(self) -> list[int]:
        return self.tokens[self.prompt_length:]

    @property
    def done(self) -> bool:
        return self.finish_reason is not None


@dataclass
class EngineStats:
    steps: int = 0
    prefill_tokens: int = 0
    decode_tokens: int = 0
    max_running: int = 0
    prefix_tokens: int = 0  # tokens of the shared prefixes, computed once each
    prefix_hits: int = 0  # prompts that reused one
    cancelled: int = 0
    step_sizes: list[int] = field(default_factory=list)  # running sequences per step, newest last (capped)


class DecodeEngine:
    """The running and waiting sequences of one model (see the module docstring). Not thread
    safe: one thread adds sequences and calls step()."""

    def __init__(self, model, *, eos_ids: list[int], max_sequences: int = 128, step_tokens: int = 512):
        reason = self.unsupported(model)
        if reason:
            raise EngineError(reason)
        if max_sequences < 1 or step_tokens < 1:
            raise EngineError(f"max_sequences and step_tokens must be positive, got {max_sequences}, {step_tokens}")
        self.model = model
        self.decoder = model.model
        self.layers = list(self.decoder.layers)
        config = model.config
        self.heads = config.num_attention_heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.max_positions = getattr(config, "max_position_embeddings", None) or 2 ** 31
        self.eos_ids = set(eos_ids)
        self.max_sequences = max_sequences
        self.step_tokens = step_tokens
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.running: list[Sequence] = []  # running[i].slot == i
        self.waiting: deque[Sequence] = deque()
        self.stats = EngineStats()
        # shared prompt prefixes and their keys and values per layer ([kv_heads, n, head_dim])
        self.prefixes: list[tuple[list[int], list[tuple[torch.Tensor, torch.Tensor]]]] = []
        self.fused = [fused_projections(layer) for layer in self.layers]
        self.qkv_sizes = (self.heads * self.head_dim, self.kv_heads * self.head_dim, self.kv_heads * self.head_dim)
        self.cache = BlockCache(layers=len(self.layers), slots=max_sequences, kv_heads=self.kv_heads,
                                head_dim=self.head_dim, dtype=self.dtype, device=self.device)

    @staticmethod
    def unsupported(model) -> str | None:
        """None when the engine can run `model`, else the reason it cannot."""
        config = getattr(model, "config", None)
        model_type = getattr(config, "model_type", None)
        if model_type not in SUPPORTED_MODEL_TYPES:
            return f"model type {model_type!r} is not one of {SUPPORTED_MODEL_TYPES}"
        if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
            return "sliding-window attention is not supported"
        decoder = getattr(model, "model", None)
        layers = getattr(decoder, "layers", None)
        if layers is None or not hasattr(decoder, "rotary_emb") or not hasattr(model, "lm_head"):
            return "the model does not have the Llama layout (model.layers, model.rotary_emb, lm_head)"
        attention, mlp = layers[0].self_attn, layers[0].mlp
        if not all(hasattr(attention, name) for name in ("q_proj", "k_proj", "v_proj", "o_proj", "scaling")):
            return "the attention modules do not have q/k/v/o projections"
        if not all(hasattr(mlp, name) for name in ("gate_proj", "up_proj", "down_proj", "act_fn")):
            return "the MLP is not a gated gate/up/down MLP"
        if type(attention.q_proj) is not torch.nn.Linear:
            return f"the projections are {type(attention.q_proj).__name__}, not plain Linear (merge adapters first)"
        return None

    # --- requests ---------------------------------------------------------------------------

    def add(self, prompt_ids: list[int], *, temperature: float, top_p: float, max_new_tokens: int, seed: int,
            on_token: Callable[[Sequence, int], None] | None = None, tag: object = None,
            keep_probs: bool = False) -> Sequence:
        """Queue one prompt; it starts at the next step with a free slot. `on_token(sequence,
        token)` is called for every sampled token (the EOS token included). With keep_probs the
        sequence keeps the next-token distribution after its prompt in `probs`."""
        if not prompt_ids:
            raise EngineError("a prompt needs at least one token")
        if len(prompt_ids) + max_new_tokens > self.max_positions:
            raise EngineError(
                f"prompt of {len(prompt_ids)} tokens plus max_new_tokens {max_new_tokens} exceeds the model's "
                f"{self.max_positions} positions: shorten the prompt or lower max_new_tokens")
        generator = torch.Generator(device="cpu")
        generator.manual_seed(seed)
        sequence = Sequence(prompt_length=len(prompt_ids), tokens=list(prompt_ids), temperature=temperature,
                            top_p=top_p, max_new_tokens=max_new_tokens, generator=generator, on_token=on_token, tag=tag,
                            keep_probs=keep_probs)
        self.waiting.append(sequence)
        return sequence

    @torch.inference_mode()
    def prefix_share(self, prefix_ids: list[int]) -> None:
        """Compute the keys and values of `prefix_ids` once; every later prompt that starts with
        it (and is longer) attends to them where they are instead of recomputing them, and
        caches only its own positions after them (the longest shared prefix it starts with, when
        there are several). The prefix runs as a one-token
        request on its own, so call this while the engine is idle."""
        if self.busy:
            raise EngineError("share a prefix while the engine is idle")
        if len(prefix_ids) < 2 or any(prefix == list(prefix_ids) for prefix, _ in self.prefixes):
            return
        sequence = self.add(list(prefix_ids), temperature=0, top_p=1, max_new_tokens=1, seed=0)
        self.run()  # alone in slot 0, released but not overwritten
        cached = []
        for layer in range(len(self.layers)):
            keys, values = self._sequence_kv(layer, 0, sequence, len(prefix_ids))
            cached.append((keys.contiguous(), values.contiguous()))
        self.prefixes.append((list(prefix_ids), cached))
        self.prefixes.sort(key=lambda item: -len(item[0]))  # the longest match first
        self.stats.prefix_tokens += len(prefix_ids)

    def _admit(self, sequence: Sequence) -> None:
        sequence.slot = len(self.running)
        self.running.append(sequence)
        for prefix in self.prefixes:
            ids = prefix[0]
            if sequence.prompt_length > len(ids) and sequence.tokens[:len(ids)] == ids:
                sequence.prefix, sequence.cached = prefix, len(ids)
                self.stats.prefix_hits += 1
                break

    @torch.inference_mode()
    def cancel(self, sequence: Sequence) -> None:
        """Stop a sequence now (its caller went away); its slot is free at the next step."""
        if sequence.done:
            return
        sequence.finish_reason = "cancelled"
        self.stats.cancelled += 1
        if sequence in self.waiting:
            self.waiting.remove(sequence)
        elif sequence.slot >= 0:
            self._release(sequence)

    @property
    def busy(self) -> bool:
        return bool(self.running or self.waiting)

    def run(self) -> None:
        """Step until every added sequence has finished."""
        while self.busy:
            self.step()

    # --- one step ---------------------------------------------------------------------------

    @torch.inference_mode()
    def step(self) -> list[Sequence]:
        """Run one forward pass over every running sequence and the next prompt chunks; returns
        the sequences that finished in it."""
        while self.waiting and len(self.running) < self.max_sequences:
            self._admit(self.waiting.popleft())
        if not self.running:
            return []
        decoding = [s for s in self.running if s.cached == len(s.tokens) - 1 and s.cached >= s.prompt_length]
        budget = max(self.step_tokens - len(decoding), 1)
        chunks = []  # (sequence, start, end) of prompt tokens fed this step
        for sequence in self.running:
            if sequence.cached < sequence.prompt_length and budget > 0:
                end = min(sequence.prompt_length, sequence.cached + budget)
                chunks.append((sequence, sequence.cached, end))
                budget -= end - sequence.cached
        self.cache.reserve(max([s.cached - s.base + 1 for s in decoding] + [end - s.base for s, _, end in chunks]),
                           most=max(s.prompt_length + s.max_new_tokens - s.base for s in self.running))
        hidden = self._forward(decoding, chunks)
        sampling = decoding + [s for s, _, end in chunks if end == s.prompt_length]
        tokens = self._sample(hidden, sampling) if sampling else []
        self.stats.steps += 1
        self.stats.decode_tokens += len(decoding)
        self.stats.prefill_tokens += sum(end - start for _, start, end in chunks)
        self.stats.max_running = max(self.stats.max_running, len(self.running))
        if len(self.stats.step_sizes) < 100_000:
            self.stats.step_sizes.append(len(self.running))
        for sequence, start, end in chunks:
            sequence.cached = end
        for sequence in decoding:
            sequence.cached += 1
        finished = []
        for sequence, token in zip(sampling, tokens):
            sequence.tokens.append(token)
            if token in self.eos_ids:
                sequence.finish_reason = "stop"
            elif len(sequence.tokens) - sequence.prompt_length >= sequence.max_new_tokens:
                sequence.finish_reason = "length"
            if sequence.on_token is not None:
                sequence.on_token(sequence, token)
            if sequence.done:
                finished.append(sequence)
        for sequence in finished:
            if sequence.slot >= 0:
                self._release(sequence)
        return finished

    def _forward(self, decoding: list[Sequence], chunks: list[tuple[Sequence, int, int]]) -> torch.Tensor:
        """Hidden states (after the final norm) at the positions where a token is sampled:
        every decoding sequence, then every chunk that completes its prompt."""
        ids, positions, slots = [], [], []
        for sequence in decoding:
            ids.append(sequence.tokens[sequence.cached])
            positions.append(sequence.cached)
            slots.append(sequence.slot)
        for sequence, start, end in chunks:
            ids.extend(sequence.tokens[start:end])
            positions.extend(range(start, end))
            slots.extend([sequence.slot] * (end - start))
        device = self.device
        input_ids = torch.tensor(ids, device=device)
        position_ids = torch.tensor(positions, device=device)
        # where each token's key and value go: its slot, at its position minus the shared prefix
        write_slots = torch.tensor(slots, device=device, dtype=torch.long)
        bases = [s.base for s in decoding] + [s.base for s, start, end in chunks for _ in range(end - start)]
        write_index = position_ids - torch.tensor(bases, device=device, dtype=torch.long)
        hidden = self.decoder.embed_tokens(input_ids)
        cos, sin = self.decoder.rotary_emb(hidden[None], position_ids[None])
        cos, sin = cos[0, :, None, :], sin[0, :, None, :]  # [T, 1, head_dim]
        n_decode = len(decoding)
        decode_slots = write_slots[:n_decode]
        shared, decode_bias, block_rows = ([], None, [])
        if n_decode:
            shared, decode_bias, block_rows = decode_mask(len(self.running), decode_slots, write_index[:n_decode],
                                                          [s.prefix for s in decoding], self.cache.block)
        # per prompt chunk: its attention mask (None: causal from position 0) and whether its keys
        # are all this step's own (it starts where its own cache starts), so that they are taken
        # from k and v directly instead of read back out of the cache
        chunk_masks = []
        for sequence, start, end in chunks:
            mask = None
            if start > 0:  # a later chunk, or one after a shared prefix: all before it, itself causally
                mask = torch.arange(end, device=device)[None, :] <= torch.arange(start, end, device=device)[:, None]
            chunk_masks.append((mask, start == sequence.base))
        for index, layer in enumerate(self.layers):
            attention = layer.self_attn
            qkv_weight, qkv_bias, gate_up_weight, gate_up_bias = self.fused[index]
            normed = layer.input_layernorm(hidden)
            q, k, v = F.linear(normed, qkv_weight, qkv_bias).split(self.qkv_sizes, dim=-1)
            q = q.reshape(-1, self.heads, self.head_dim)
            k = k.reshape(-1, self.kv_heads, self.head_dim)
            v = v.reshape(-1, self.kv_heads, self.head_dim)
            if hasattr(attention, "q_norm"):
                q, k = attention.q_norm(q), attention.k_norm(k)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            self.cache.write_tokens(index, write_slots, write_index, k, v)
            outputs = []
            if n_decode:
                outputs.append(self._decode_attention(index, q[:n_decode], decode_slots, decode_bias, block_rows,
                                                      [prefix[1][index] for prefix in shared], attention.scaling))
            offset = n_decode
            for (sequence, start, end), (mask, fresh) in zip(chunks, chunk_masks):
                n = end - start
                if fresh:
                    keys, values = self._fresh_kv(index, sequence, k[offset:offset + n], v[offset:offset + n])
                else:
                    keys, values = self._sequence_kv(index, sequence.slot, sequence, end)
                out = F.scaled_dot_product_attention(
                    q[offset:offset + n].transpose(0, 1)[None], keys[None], values[None], attn_mask=mask,
                    is_causal=mask is None, scale=attention.scaling, enable_gqa=self.kv_heads != self.heads)
                outputs.append(out[0].transpose(0, 1))
                offset += n
            attended = torch.cat(outputs) if len(outputs) > 1 else outputs[0]
            hidden = hidden + attention.o_proj(attended.reshape(-1, self.heads * self.head_dim))
            gate, up = F.linear(layer.post_attention_layernorm(hidden), gate_up_weight, gate_up_bias).chunk(2, dim=-1)
            hidden = hidden + layer.mlp.down_proj(layer.mlp.act_fn(gate) * up)
        # keep only the positions that sample: each decoding row, each completed prompt's last token
        keep = list(range(n_decode))
        offset = n_decode
        for sequence, start, end in chunks:
            offset += end - start
            if end == sequence.prompt_length:
                keep.append(offset - 1)
        if len(keep) != hidden.shape[0]:
            hidden = hidden[torch.tensor(keep, device=device, dtype=torch.long)]
        return self.decoder.norm(hidden)

    def _sequence_kv(self, layer: int, slot: int, sequence: Sequence, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of positions 0..end-1 of `sequence`, whose own are in `slot`,
        [kv_heads, end, head_dim]: its shared prefix's (positions 0..base-1), then its own from
        the cache."""
        return self._after_prefix(layer, sequence.prefix, *self.cache.read_slot(layer, slot, end - sequence.base))

    def _fresh_kv(self, layer: int, sequence: Sequence, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The same for a chunk whose own keys are all computed this step (k, v: [n, kv_heads,
        head_dim], the values just written to the cache), without reading them back."""
        return self._after_prefix(layer, sequence.prefix, k.transpose(0, 1), v.transpose(0, 1))

    @staticmethod
    def _after_prefix(layer: int, prefix, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A sequence's own keys and values [kv_heads, n, head_dim] after its shared prefix's, if any."""
        if prefix is None:
            return keys, values
        prefix_keys, prefix_values = prefix[1][layer]
        return torch.cat([prefix_keys, keys], dim=1), torch.cat([prefix_values, values], dim=1)

    def _decode_attention(self, layer: int, q, slots, bias, block_rows, shared, scaling) -> torch.Tensor:
        """One query per decoding sequence against its prefix (read once for all rows) and its
        own cached keys, block by block, each read in place up to the last slot that reaches into
        it (cascade_attention);
        [B, heads, head_dim] out. When some running sequence is not decoding this step, its row
        gets a zero query, and is dropped."""
        rows = bias.shape[0]
        everyone = rows == q.shape[0]  # decoding follows slot order, so then slots == 0..rows-1
        query = q if everyone else q.new_zeros(rows, self.heads, self.head_dim).index_copy_(0, slots, q)
        query = query.view(rows, self.kv_heads, self.heads // self.kv_heads, self.head_dim)
        keys, values = self.cache.block_views(layer, block_rows)
        out = cascade_attention(query, keys, values, shared, bias, scaling).reshape(rows, self.heads, self.head_dim)
        return out if everyone else out[slots]

    def _sample(self, hidden: torch.Tensor, sequences: list[Sequence]) -> list[int]:
        logits = self.model.lm_head(hidden).float()
        for row, sequence in enumerate(sequences):
            if sequence.keep_probs and sequence.probs is None:
                sequence.probs = torch.softmax(logits[row], dim=-1).cpu()
        return tokens_sample(logits, temperatures=[s.temperature for s in sequences],
                             top_ps=[s.top_p for s in sequences], generators=[s.generator for s in sequences])

    def _release(self, sequence: Sequence) -> None:
        """Free the sequence's slot, moving the last running sequence into it (slots stay 0..n-1)."""
        slot, last = sequence.slot, self.running[-1]
        if last is not sequence:
            self.cache.move(last.slot, slot, last.cached - last.base)
            last.slot = slot
            self.running[slot] = last
        self.running.pop()
        sequence.slot = -1

    def release_memory(self) -> None:
        """Drop the cache (it is rebuilt on the next step)."""
        if self.running or self.waiting:
            raise EngineError("the engine still has sequences")
        self.cache.clear()

