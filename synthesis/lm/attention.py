"""Attention of the continuous-batching engine (synthesis/engine.py) for many sequences at once.

Each sequence attends to a shared prompt prefix (a system turn many prompts start with, stored
once) and to its own keys. `cascade_attention` reads a prefix's keys once for every row, as one
matrix product per kv head with the rows' queries stacked, and each row's own keys as batched
products; one softmax runs over both, so the result is that of attending to the whole sequence.
(Prompt chunks do not use it: padding a step's chunks of mixed lengths into one batch measured
2.7x slower than one scaled_dot_product_attention call per chunk.)
"""
import torch


def cascade_attention(query: torch.Tensor, own_keys: list[torch.Tensor], own_values: list[torch.Tensor],
                      shared: list[tuple[torch.Tensor, torch.Tensor]], bias: torch.Tensor,
                      scaling: float) -> torch.Tensor:
    """query [R, kv_heads, m, head_dim] (the m queries of row r that read kv head h: the query
    heads of its group, times the row's query positions); own_keys / own_values: pieces along
    the key positions, each [r, kv_heads, n, head_dim] for the first r <= R rows (rows past r
    must have -inf bias there: they are not read); shared: per prefix its ([kv_heads, P,
    head_dim] keys, values); bias: additive mask [R, 1, m or 1, sum of P + sum of n], 0 or -inf,
    the prefixes' positions first. Returns [R, kv_heads, m, head_dim]."""
    rows, kv, m, dim = query.shape
    stacked = query.permute(1, 0, 2, 3).reshape(kv, rows * m, dim) if shared else None
    parts = [torch.bmm(stacked, keys.transpose(1, 2)).view(kv, rows, m, -1).permute(1, 0, 2, 3)
             for keys, _ in shared]
    for keys in own_keys:
        part = torch.matmul(query[:keys.shape[0]], keys.transpose(-1, -2))
        if keys.shape[0] < rows:  # rows past it: any finite score, the bias makes it -inf
            part = torch.cat([part, part.new_zeros(rows - keys.shape[0], *part.shape[1:])])
        parts.append(part)
    scores = torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]
    weights = torch.softmax(scores.float() * scaling + bias, dim=-1).to(query.dtype)
    out, offset = None, 0
    for keys, values in shared:
        length = keys.shape[1]
        part = weights[..., offset:offset + length].permute(1, 0, 2, 3).reshape(kv, rows * m, length)
        done = torch.bmm(part, values).view(kv, rows, m, dim).permute(1, 0, 2, 3)
        out = done if out is None else out + done
        offset += length
    for values in own_values:
        length, used = values.shape[2], values.shape[0]
        done = torch.matmul(weights[:used, ..., offset:offset + length], values)
        if out is None and used < rows:
            out = torch.cat([done, done.new_zeros(rows - used, *done.shape[1:])])
        elif out is None:
            out = done
        else:
            out[:used] += done
        offset += length
    return out


def decode_mask(rows: int, slots: torch.Tensor, index: torch.Tensor, prefixes: list, block: int):
    """For one decode step over `rows` running slots, of which the decoding sequences sit in
    `slots` at own cache indices `index` and start with `prefixes` (an engine prefix entry,
    (token ids, per-layer keys and values), or None): (the distinct prefixes, the additive mask
    [rows, 1, 1, their lengths + own positions], 0 or -inf, and per cache block of `block`
    positions the number of leading slots that must read it). A decoding row sees its own
    prefix, not the others', then its own indices 0..index. Running rows that do not decode
    this step see everything (finite, and dropped). A block is read only up to the last slot
    that reaches into it: sequences admitted first are the longest and hold the first slots."""
    device = index.device
    shared = list({id(p): p for p in prefixes if p is not None}.values())
    longest = -(-(int(index.max()) + 1) // block) * block
    limits = torch.full((rows,), longest, dtype=torch.long, device=device)
    limits[slots] = index
    own = torch.zeros(rows, longest, dtype=torch.float32, device=device)
    own.masked_fill_(torch.arange(longest, device=device)[None, :] > limits[:, None], float("-inf"))
    parts = []
    for prefix in shared:
        others = [slot for slot, p in zip(slots.tolist(), prefixes) if p is not prefix]
        part = torch.zeros(rows, len(prefix[0]), dtype=torch.float32, device=device)
        if others:
            part[torch.tensor(others, device=device, dtype=torch.long)] = float("-inf")
        parts.append(part)
    bias = torch.cat(parts + [own], dim=1) if parts else own
    reach = [0] * (longest // block)  # per block, 1 + the last slot that reads it
    for slot, own_index in zip(slots.tolist(), index.tolist()):
        for number in range(own_index // block + 1):
            reach[number] = max(reach[number], slot + 1)
    return shared, bias[:, None, None, :], reach


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """The rotary embedding's rotation: the last dimension's halves swapped, the first negated."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)
