"""The one JSON cleaner (jobs.json_safe), used for job event payloads and the evaluation report:
what it returns is valid JSON for any parser, and it imports neither Django nor numpy or torch."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from jobs.json_safe import json_safe


def test_non_finite_floats_become_none_at_any_depth():
    value = {"loss": math.nan, "curve": [1.0, math.inf, (-math.inf, 2.5)], "nested": {"x": {"y": math.nan}}}
    assert json_safe(value) == {"loss": None, "curve": [1.0, None, [None, 2.5]], "nested": {"x": {"y": None}}}


@pytest.mark.parametrize("scalar, expected", [
    (np.float32(1.5), 1.5), (np.float64(math.nan), None), (np.float32(math.inf), None), (np.int64(3), 3),
    (np.bool_(True), True), (np.array(2.0), 2.0), (torch.tensor(0.25), 0.25), (torch.tensor(math.nan), None),
    (torch.tensor(7), 7),
])
def test_numpy_and_torch_scalars_become_the_python_value_they_hold(scalar, expected):
    cleaned = json_safe({"value": scalar})["value"]
    assert cleaned == expected and type(cleaned) is type(expected)


def test_the_result_is_valid_strict_json_and_keys_become_strings():
    value = {1: np.float32(0.5), "steps": [np.int64(1), torch.tensor(2)], "text": "fever", "flag": True, "none": None}
    text = json.dumps(json_safe(value), allow_nan=False)
    assert json.loads(text) == {"1": 0.5, "steps": [1, 2], "text": "fever", "flag": True, "none": None}


def test_arrays_and_other_values_are_left_as_they_are():
    array = np.array([1.0, 2.0])
    assert json_safe(array) is array
    assert json_safe("nan") == "nan" and json_safe(10**30) == 10**30


def test_the_cleaner_imports_neither_django_nor_numpy_nor_torch():
    code = ("import sys, jobs.json_safe; "
            "print(sorted(m for m in ('django', 'numpy', 'torch') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
