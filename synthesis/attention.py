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


def prefix_bias(rows: int, members: list[list[int]], lengths: list[int], device) -> list[torch.Tensor]:
    """Per shared prefix, a [rows, length] additive mask: 0 for the rows in `members` (the
    rows that start with it), -inf for the others."""
    parts = []
    for rows_of, length in zip(members, lengths):
        part = torch.full((rows, length), float("-inf"), dtype=torch.float32, device=device)
        if rows_of:
            part[torch.tensor(rows_of, device=device, dtype=torch.long)] = 0.0
        parts.append(part)
    return parts
