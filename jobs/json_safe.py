"""The one JSON cleaner: what a job event, an artifact's metadata or a report may hold, made
valid JSON for any parser (PostgreSQL's jsonb and browsers' JSON.parse refuse NaN and infinity).

Plain Python, no Django and no numpy or torch import (their scalars are recognised by shape), so
every layer may use it: the jobs engine for event payloads, the evaluation for its reports.
"""
import math
from typing import Any


def json_safe(value: Any) -> Any:
    """A copy of `value` that json.dumps(..., allow_nan=False) accepts: NaN and infinities become
    None, numpy and torch scalars (0-dimensional values with .item()) the Python number or bool
    they hold, tuples lists, dict keys strings; recursively. Other values are returned as they are."""
    if _is_array_scalar(value):
        value = value.item()
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def _is_array_scalar(value: Any) -> bool:
    """A numpy scalar (np.float32(1.5), np.int64(3), np.bool_), a 0-d numpy array or a 0-d torch
    tensor. Python's own numbers have no .item()."""
    return getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None))
