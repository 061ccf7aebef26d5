"""Token sampling for the continuous-batching engine (synthesis/engine.py): greedy, or exact
top-p with each sequence's own random generator.

The nucleus of a row is the shortest run of its most likely tokens holding top_p of the mass
(as transformers' TopPLogitsWarper, top_k off). Sorting whole 49,152-token rows every step is
what made sampling a third of a decode step, so the rows are not sorted: the tokens at or above
a probability threshold are a superset of the nucleus whenever they hold top_p of the mass, and
only those candidates (tens to hundreds per row) are sorted, all rows in one sort. Thresholds
are tried from 1e-3 down to (1 - top_p) / (2 x vocabulary), which always qualifies (the tokens
below it hold less than half of 1 - top_p), so the nucleus is exact, never truncated."""
import torch

THRESHOLDS = (1e-3, 1e-4, 1e-5)  # the highest whose candidates qualify; else the one that always does
MASS_MARGIN = 1e-4  # a candidate set must hold top_p plus this (float32 sums), else try lower


def tokens_sample(logits: torch.Tensor, *, temperatures: list[float], top_ps: list[float],
                  generators: list[torch.Generator]) -> list[int]:
    """One token per row of `logits` [rows, vocab]: the argmax where the temperature is 0, else a
    draw from the top-p nucleus of softmax(logits / temperature) (as transformers' TopPLogitsWarper
    with top_k off), with the row's own generator."""
    rows = logits.shape[0]
    device = logits.device
    tokens = [0] * rows
    greedy = [row for row in range(rows) if temperatures[row] <= 0]
    if greedy:
        for row, token in zip(greedy, _rows(logits, greedy).argmax(-1).tolist()):
            tokens[row] = token
    sampled = [row for row in range(rows) if temperatures[row] > 0]
    if not sampled:
        return tokens
    chosen = _rows(logits, sampled)
    scale = torch.tensor([temperatures[row] for row in sampled], device=device, dtype=torch.float32)[:, None]
    scaled = chosen.float()
    if scaled is logits:  # float32 logits, all rows sampled: the caller's tensor stays as it was
        scaled = scaled.clone()
    probs = torch.softmax(scaled.div_(scale), dim=-1)
    whole = [i for i, row in enumerate(sampled) if top_ps[row] >= 1]
    nucleus = [i for i, row in enumerate(sampled) if top_ps[row] < 1]
    if whole:
        draws = _whole_draw(_rows(probs, whole), [generators[sampled[i]] for i in whole])
        for i, token in zip(whole, draws):
            tokens[sampled[i]] = token
    if nucleus:
        draws = nucleus_draw(_rows(probs, nucleus), [top_ps[sampled[i]] for i in nucleus],
                             [generators[sampled[i]] for i in nucleus])
        for i, token in zip(nucleus, draws):
            tokens[sampled[i]] = token
    return tokens


def _rows(tensor: torch.Tensor, rows: list[int]) -> torch.Tensor:
    """tensor[rows] (a copy), or the tensor itself when rows are all of its rows in order."""
    if rows == list(range(tensor.shape[0])):
        return tensor
    return tensor[torch.tensor(rows, device=tensor.device)]


def _uniforms(generators: list[torch.Generator], device) -> torch.Tensor:
    """One uniform [0, 1) float64 per generator, from that generator."""
    return torch.stack([torch.rand((), generator=generator, dtype=torch.float64) for generator in generators]).to(device)


def _whole_draw(probs: torch.Tensor, generators: list[torch.Generator]) -> list[int]:
    """One draw per row from the whole distribution (top_p 1)."""
    cumulative = probs.double().cumsum(-1)
    targets = _uniforms(generators, probs.device)[:, None] * cumulative[:, -1:]
    return torch.searchsorted(cumulative, targets, right=True).clamp(max=probs.shape[-1] - 1)[:, 0].tolist()


def nucleus_draw(probs: torch.Tensor, top_ps: list[float], generators: list[torch.Generator]) -> list[int]:
    """One token per row of `probs` [rows, vocab] (softmax rows), drawn from the row's top-p
    nucleus renormalised, with the row's generator (see the module docstring). One pass over
    the rows finds every token at or above the lowest fixed threshold; each row then uses the
    highest threshold whose candidates hold its top_p, computed on those candidates alone."""
    rows, vocab = probs.shape
    device = probs.device
    top_p = torch.tensor(top_ps, device=device, dtype=torch.float64)
    row_of, column = (probs >= THRESHOLDS[-1]).nonzero(as_tuple=True)
    values = probs[row_of, column].double()
    chosen = torch.zeros(rows, dtype=torch.float64, device=device)  # 0: no fixed threshold qualifies
    for threshold in reversed(THRESHOLDS):  # the highest qualifying threshold wins
        mass = torch.zeros(rows, dtype=torch.float64, device=device).index_add_(0, row_of, values * (values >= threshold))
        chosen = torch.where(mass >= top_p + MASS_MARGIN, threshold, chosen)
    tokens = torch.zeros(rows, dtype=torch.long, device=device)
    fixed = chosen > 0
    if bool(fixed.any()):
        keep = fixed[row_of] & (values >= chosen[row_of])
        done = fixed.nonzero().squeeze(1)
        # rows renumbered 0..len(done)-1 among the rows that use a fixed threshold
        renumber = torch.full((rows,), -1, dtype=torch.long, device=device)
        renumber[done] = torch.arange(len(done), device=device)
        tokens[done] = _candidates_draw(renumber[row_of[keep]], column[keep], values[keep], top_p[done],
                                        [generators[i] for i in done.tolist()])
    if not bool(fixed.all()):  # flat rows: the threshold that qualifies by construction
        rest = (~fixed).nonzero().squeeze(1)
        subset = probs[rest]
        mask = subset >= ((1 - top_p[rest]) / (2 * vocab)).float()[:, None]
        rest_rows, rest_columns = mask.nonzero(as_tuple=True)
        tokens[rest] = _candidates_draw(rest_rows, rest_columns, subset[rest_rows, rest_columns].double(), top_p[rest],
                                        [generators[i] for i in rest.tolist()])
    return tokens.tolist()


def _candidates_draw(row_of: torch.Tensor, column: torch.Tensor, values: torch.Tensor, top_p: torch.Tensor,
                     generators: list[torch.Generator]) -> torch.Tensor:
    """Per row, one draw from the nucleus found among its candidates (row_of, column: the
    candidate's row 0..n-1 and token; values: its probability, float64), which hold at least
    top_p of the row's mass: the candidates of all rows sorted in one sort (row, then probability
    descending), cumulative mass per row, the nucleus the tokens whose mass before them is below
    top_p (at least one), a uniform draw over its renormalised mass."""
    order = torch.sort(row_of.double() * 4 - values).indices  # rows apart by 4 > any probability
    row_of, column, values = row_of[order], column[order], values[order]
    counts = torch.bincount(row_of, minlength=len(generators))
    starts = counts.cumsum(0) - counts
    cumulative = values.cumsum(0)
    before_row = cumulative[starts] - values[starts]  # mass of earlier rows' candidates
    within = cumulative - before_row[row_of]  # cumulative mass inside the row
    keep = (within - values) < top_p[row_of]
    kept = torch.bincount(row_of, weights=keep.double(), minlength=len(generators)).long().clamp(min=1)
    last = starts + kept - 1
    targets = before_row + _uniforms(generators, values.device) * within[last]
    picked = torch.searchsorted(cumulative, targets, right=True)
    picked = torch.minimum(torch.maximum(picked, starts), last)
    return column[picked]
