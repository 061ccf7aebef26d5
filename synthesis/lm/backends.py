"""Choosing and loading a generation backend: `TransformersBackend` (generation.py) anywhere,
`VLLMBackend` (vllm_backend.py) where CUDA and vllm are both present. Both take the same
prompts and SamplingParams and return the same Completions."""
import importlib.util
from pathlib import Path

import torch

from .generation import GenerationError, TransformersBackend
from .vllm_backend import VLLMBackend

BACKENDS = ("auto", "transformers", "vllm")


def backend_choose(requested: str = "auto") -> str:
    """"transformers" or "vllm". "auto" takes vllm when CUDA and vllm are both present."""
    if requested not in BACKENDS:
        raise GenerationError(f"unknown generation backend {requested!r}: choose one of {BACKENDS}")
    has_cuda = torch.cuda.is_available()
    has_vllm = importlib.util.find_spec("vllm") is not None
    if requested == "auto":
        return "vllm" if has_cuda and has_vllm else "transformers"
    if requested == "vllm" and not (has_cuda and has_vllm):
        missing = " and ".join(name for name, present in (("CUDA", has_cuda), ("vllm", has_vllm)) if not present)
        raise GenerationError(
            f"the vllm backend needs CUDA and the vllm package, but {missing} is missing on this machine: "
            f"install the `gpu` extra on a CUDA machine (pip install '.[gpu]'), or use the transformers backend"
        )
    return requested


def backend_load(*, backend: str = "auto", model_spec: str, adapter_path: Path | None, cache_dir: Path,
                 dtype: torch.dtype | None = None):
    """A loaded backend (TransformersBackend or VLLMBackend) for `model_spec` plus the optional
    LoRA adapter directory."""
    if backend_choose(backend) == "vllm":
        return VLLMBackend.load(model_spec=model_spec, adapter_path=adapter_path, cache_dir=cache_dir, dtype=dtype)
    return TransformersBackend.load(model_spec=model_spec, adapter_path=adapter_path, cache_dir=cache_dir, dtype=dtype)
