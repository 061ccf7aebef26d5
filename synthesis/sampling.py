"""Token sampling for the continuous-batching engine (synthesis/engine.py): greedy, or exact
top-p with each sequence's own random generator."""
import torch

TOP_P_CANDIDATES = 64


def tokens_sample(logits: torch.Tensor, *, temperatures: list[float], top_ps: list[float],
                  generators: list[torch.Generator]) -> list[int]:
    """One token per row of `logits` [rows, vocab]: the argmax where the temperature is 0, else a
    draw from the top-p nucleus of softmax(logits / temperature) (as transformers' TopPLogitsWarper
    with top_k off), with the row's own generator."""
    tokens = logits.argmax(-1).tolist()
    sampled = [row for row, temperature in enumerate(temperatures) if temperature > 0]
    if not sampled:
        return tokens
    device, vocab = logits.device, logits.shape[-1]
    scale = torch.tensor([temperatures[row] for row in sampled], device=device)[:, None]
    probs = torch.softmax(logits[torch.tensor(sampled, device=device)] / scale, dim=-1)
    pending = []
    for position, row in enumerate(sampled):
        if top_ps[row] >= 1:  # the whole vocabulary: no nucleus to find
            tokens[row] = int(torch.multinomial(probs[position], 1, generator=generators[row]))
        else:
            pending.append(position)
    # A row's nucleus lies within its k most likely tokens once they hold top_p of the mass; try a
    # few k, batched, before sorting a whole row.
    for k in (TOP_P_CANDIDATES, 16 * TOP_P_CANDIDATES, vocab):
        if not pending:
            break
        k = min(k, vocab)
        values, indices = probs[torch.tensor(pending, device=device)].topk(k, dim=-1)  # sorted
        mass = values.sum(-1).tolist()
        left = []
        for found, position in enumerate(pending):  # found: row of the top-k; position: in sampled
            row = sampled[position]
            if mass[found] >= top_ps[row] or k == vocab:
                tokens[row] = int(indices[found, _nucleus_draw(values[found], top_ps[row], generators[row])])
            else:
                left.append(position)
        pending = left
    return tokens


def _nucleus_draw(sorted_probs: torch.Tensor, top_p: float, generator: torch.Generator) -> int:
    """Index into `sorted_probs` (descending) of one draw from the top-p nucleus: the most likely
    tokens whose mass before them is below top_p (at least one), renormalised."""
    cumulative = sorted_probs.cumsum(0)
    keep = int(((cumulative - sorted_probs) < top_p).sum().clamp(min=1))
    kept = cumulative[:keep]
    u = torch.rand((), generator=generator, dtype=kept.dtype) * kept[-1]
    return min(int(torch.searchsorted(kept, u, right=True)), keep - 1)
