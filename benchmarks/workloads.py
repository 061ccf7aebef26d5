"""The FLOPs and bytes the three timed workloads need (generation, the DP step, scoring), from
their token counts, for benchmarks.roofline. No torch, no Django.

Counted as the work needed, whatever the implementation does: a position runs through the
layers only where its output is used (every position except a text's last), the output layer
only where a token is sampled or scored, a prefix shared by many texts once. Weights are read
from memory once per forward pass (twice per training step); decoding also reads each
position's keys and values for every new token after it.
"""
import math
from dataclasses import replace

from benchmarks.roofline import (ModelShape, Product, Workload, causal_context_sum, forward_products,
                                 input_gradient_products)

IGNORE_INDEX = -100  # privacy.dp.train's label of an unscored position


def _named(products: list[Product], prefix: str) -> list[Product]:
    return [replace(product, name=f"{prefix} {product.name}") for product in products]


def generation_workload(shape: ModelShape, *, prompt_lengths: list[int], shared_lengths: list[int],
                        new_tokens: list[int], element_bytes: int, decode_rows: int,
                        tokens_per_pass: int) -> Workload:
    """A request of prompts (tokens each, and the shared prefix each starts with, 0 for none;
    equal nonzero lengths are one prefix, computed once) that generated new_tokens each.
    Prefill products run at min(prefill tokens, tokens_per_pass) rows, decode products and the
    output layer at `decode_rows` (the sequences running at once). Forward passes, each reading
    every weight once: at least one per new token of the longest completion and one per
    tokens_per_pass tokens computed. KV reads: each decoded token reads its sequence's own keys
    and values; a shared prefix's are read once per pass while its prompts decode."""
    prefixes = sorted({length for length in shared_lengths if length > 0})
    own = [prompt - shared for prompt, shared in zip(prompt_lengths, shared_lengths)]
    decoded = [max(new - 1, 0) for new in new_tokens]  # the last new token is never run
    prefill_tokens, decode_tokens = sum(prefixes) + sum(own), sum(decoded)
    products = _named(forward_products(shape, body_tokens=prefill_tokens, head_tokens=0,
                                       body_rows=max(1, min(prefill_tokens, tokens_per_pass)), head_rows=1), "prefill")
    products += _named(forward_products(shape, body_tokens=decode_tokens, head_tokens=sum(new_tokens),
                                        body_rows=decode_rows, head_rows=decode_rows), "decode")
    context = sum(causal_context_sum(0, length) for length in prefixes)
    context += sum(causal_context_sum(shared, mine + steps)
                   for shared, mine, steps in zip(shared_lengths, own, decoded))
    passes = max(max(new_tokens, default=0), math.ceil((prefill_tokens + decode_tokens) / tokens_per_pass))
    kv_positions = sum(causal_context_sum(mine, steps) for mine, steps in zip(own, decoded))
    kv_positions += sum(length * max(steps for shared, steps in zip(shared_lengths, decoded) if shared == length)
                        for length in prefixes)
    bytes_moved = (passes * (shape.body_params + shape.head_params) * element_bytes
                   + kv_positions * shape.kv_bytes_per_position(element_bytes))
    return Workload(name="generation", products=tuple(products), other_flops=float(shape.attention_flops(context)),
                    bytes_moved=float(bytes_moved),
                    notes=f"{len(prompt_lengths)} prompts, {prefill_tokens} prefill + {decode_tokens} decode positions, "
                          f"{sum(new_tokens)} new tokens, {passes} forward passes")


def lora_shapes(shape: ModelShape, targets: tuple[str, ...]) -> list[tuple[int, int]]:
    """(inner, out) of the projections LoRA adapts (llama names: q_proj ... down_proj)."""
    q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    known = {"q_proj": (shape.hidden, q), "k_proj": (shape.hidden, kv), "v_proj": (shape.hidden, kv),
             "o_proj": (q, shape.hidden), "gate_proj": (shape.hidden, shape.intermediate),
             "up_proj": (shape.hidden, shape.intermediate), "down_proj": (shape.intermediate, shape.hidden)}
    return [known[target] for target in targets]


def training_workload(shape: ModelShape, *, lengths: list[int], scored: list[int], steps: int, lora_rank: int,
                      lora_targets: tuple[str, ...], element_bytes: int) -> Workload:
    """One training step (the mean over `steps` steps of the examples given: tokens each, and
    the positions scored by the loss) with frozen base weights and LoRA adapters. Forward: every
    position but each example's last through the layers, the output layer at the scored ones.
    Backward: the input gradient of every frozen product (as many FLOPs as forward; the
    gradient must reach the first layer's adapters), the adapters' forward + both gradients
    (3x), attention 3x. One step is one pass of `sum(lengths) / steps` rows. Weights are read
    twice a step (forward and backward)."""
    positions = sum(length - 1 for length in lengths)
    rows = max(1, round(positions / steps))
    head_rows = max(1, round(sum(scored) / steps))
    forward = forward_products(shape, body_tokens=positions, head_tokens=sum(scored), body_rows=rows,
                               head_rows=head_rows)
    products = forward + input_gradient_products(forward)
    context = sum(causal_context_sum(0, length - 1) for length in lengths)
    lora_params = shape.layers * sum(lora_rank * (inner + out) for inner, out in lora_shapes(shape, lora_targets))
    other = 3 * shape.attention_flops(context) + 3 * 2 * positions * lora_params
    per_step = [replace(product, flops=product.flops / steps) for product in products]
    return Workload(name="dp_step", products=tuple(per_step), other_flops=other / steps,
                    bytes_moved=float(2 * (shape.body_params + shape.head_params) * element_bytes),
                    notes=f"per step: {positions / steps:.0f} positions, {sum(scored) / steps:.0f} scored, "
                          f"LoRA r={lora_rank} on {','.join(lora_targets)}")


def shared_ids_length(examples: list[tuple[list[int], list[int]]]) -> int:
    """Leading input ids every example agrees on."""
    first, length = examples[0][0], min(len(ids) for ids, _ in examples)
    for ids, _ in examples[1:]:
        length = next((i for i in range(length) if ids[i] != first[i]), length)
    return length


def scoring_workload(shape: ModelShape, *, calls: list[list[tuple[list[int], list[int]]]], element_bytes: int,
                     tokens_per_pass: int) -> Workload:
    """Scoring calls, each a list of (input ids, labels) examples whose tokens t >= 1 with a
    label other than IGNORE_INDEX are scored given everything before them. The ids all examples
    of a call share (less one, so each has an input of its own) run once; then each example's
    positions up to its second last. The output layer runs at the scored positions. Products
    run at min(positions, tokens_per_pass) rows; weights are read once per tokens_per_pass
    positions of a call."""
    positions = scored_total = context = passes = 0
    for examples in calls:
        cached = max(shared_ids_length(examples) - 1, 0) if len(examples) > 1 else 0
        own = [len(ids) - 1 - cached for ids, _ in examples]
        call_positions = cached + sum(own)
        positions += call_positions
        prefix_scored = sum(any(labels[t] != IGNORE_INDEX for _, labels in examples) for t in range(1, cached + 1))
        scored_total += prefix_scored + sum(sum(label != IGNORE_INDEX for label in labels[cached + 1:])
                                            for _, labels in examples)
        context += causal_context_sum(0, cached) + sum(causal_context_sum(cached, mine) for mine in own)
        passes += math.ceil(call_positions / tokens_per_pass)
    products = forward_products(shape, body_tokens=positions, head_tokens=scored_total,
                                body_rows=max(1, min(positions, tokens_per_pass)),
                                head_rows=max(1, min(scored_total, tokens_per_pass)))
    return Workload(name="scoring", products=tuple(products), other_flops=float(shape.attention_flops(context)),
                    bytes_moved=float(passes * (shape.body_params + shape.head_params) * element_bytes),
                    notes=f"{len(calls)} scoring calls, {sum(len(c) for c in calls)} texts, {positions} positions, "
                          f"{scored_total} scored, {passes} forward passes")
