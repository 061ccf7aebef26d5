"""The machine's own limits, measured, and the fraction of them a benchmark reaches.

A benchmark's time is judged against two ceilings measured on the machine it runs on, at the
moment it runs (the CPUs differ from session to session; absolute targets mislead):
  - the matrix-product rate (FLOP/s) of torch at the workload's own shapes and dtype
    ([rows x inner] @ [inner x out], as `F.linear` runs it), best of a few repeats;
  - the memory bandwidth (bytes/s) of a large element-wise product (read + write counted).
A workload is counted as its matrix products (FLOPs, each at the rate of its shape), other
arithmetic (attention products, LoRA; at the best rate measured) and the bytes it must move
from memory (weights read once per forward pass, the KV cache read in decoding). Its time bound
is max(compute seconds, memory seconds): no implementation can beat it on this machine, so
bound / measured time is the fraction of the ceiling reached (1.0 = at the ceiling).

Everything counted is the work the workload needs, not what an implementation happens to do
(padding, logits nobody reads, a shared prefix computed twice are not counted), and the bound
leaves out what is hard to bound (activations, logits written, Python): it is optimistic, a
true lower bound on the time. No Django: a notebook imports it as it is.
"""
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field

FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


@dataclass(frozen=True)
class Machine:
    """The CPU as lscpu names it, the flags that decide the fast dtype, and the load average
    (1-minute, processes) when it was described."""

    model_name: str
    family: str
    model: str
    cores: int
    flags: tuple[str, ...]
    load_average: float

    def line(self, load_end: float | None = None) -> str:
        flags = " ".join(self.flags) or "none of " + " ".join(FLAGS_OF_INTEREST)
        load = f"load average {self.load_average:.2f} at start"
        if load_end is not None:
            load += f", {load_end:.2f} at end"
        return f"{self.model_name} (family {self.family}, model {self.model}), {self.cores} cores, flags {flags}; {load}"


def lscpu_parse(text: str) -> dict[str, str]:
    """lscpu's "Key:   value" lines as a dict (first occurrence of a key wins)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    return fields


def machine_describe(lscpu_text: str | None = None) -> Machine:
    """This machine (or the one `lscpu_text` describes) with the current load average."""
    if lscpu_text is None:
        lscpu_text = ""
        if shutil.which("lscpu"):
            lscpu_text = subprocess.run(["lscpu"], capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"},
                                        check=False).stdout
    fields = lscpu_parse(lscpu_text)
    if "Flags" not in fields and os.path.exists("/proc/cpuinfo"):  # lscpu missing: the kernel's view
        with open("/proc/cpuinfo") as cpuinfo:
            info = lscpu_parse(cpuinfo.read())
        fields.setdefault("Model name", info.get("model name", "unknown"))
        fields.setdefault("CPU family", info.get("cpu family", "?"))
        fields.setdefault("Model", info.get("model", "?"))
        fields["Flags"] = info.get("flags", "")
    present = set(fields.get("Flags", "").split())
    return Machine(model_name=fields.get("Model name", "unknown"), family=fields.get("CPU family", "?"),
                   model=fields.get("Model", "?"), cores=int(fields.get("CPU(s)", os.cpu_count() or 0)),
                   flags=tuple(flag for flag in FLAGS_OF_INTEREST if flag in present),
                   load_average=os.getloadavg()[0])


def matmul_flops(rows: int, inner: int, out: int) -> int:
    """FLOPs of [rows x inner] @ [inner x out]: one multiply and one add per term."""
    return 2 * rows * inner * out


def matmul_rate(rows: int, inner: int, out: int, dtype, *, repeats: int = 5, min_seconds: float = 0.02) -> float:
    """FLOP/s of `F.linear` of a [rows x inner] input with an [out x inner] weight in `dtype`,
    torch's current thread count: best of `repeats`, each the mean of enough calls to last
    `min_seconds` (small products last microseconds, below the clock's resolution)."""
    import torch

    x, weight = torch.randn(rows, inner, dtype=dtype), torch.randn(out, inner, dtype=dtype)
    torch.nn.functional.linear(x, weight)  # warm-up: oneDNN picks and caches its kernel
    started = time.perf_counter()
    torch.nn.functional.linear(x, weight)
    calls = max(1, int(min_seconds / max(time.perf_counter() - started, 1e-7)))
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            torch.nn.functional.linear(x, weight)
        best = min(best, (time.perf_counter() - started) / calls)
    return matmul_flops(rows, inner, out) / best


def memory_bandwidth(megabytes: float = 200, *, repeats: int = 5) -> float:
    """Bytes/s of `x * 2` into a preallocated output over `megabytes` of float32 read and as
    many written (both counted), best of `repeats`."""
    import torch

    count = int(megabytes * 1e6 / 4)
    x, y = torch.ones(count), torch.empty(count)
    torch.mul(x, 2, out=y)  # the first pass touches the pages
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mul(x, 2, out=y)
        best = min(best, time.perf_counter() - started)
    return 2 * x.nbytes / best


@dataclass(frozen=True)
class Product:
    """One kind of matrix product of a workload: its shape (rows x inner x out, the rows it
    runs at, which set its rate) and the FLOPs all its calls take together."""

    name: str
    rows: int
    inner: int
    out: int
    flops: float

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.rows, self.inner, self.out


@dataclass(frozen=True)
class Workload:
    """What a benchmark's timed work needs: matrix products, other FLOPs (attention, LoRA;
    counted at the best rate measured) and bytes moved from memory."""

    name: str
    products: tuple[Product, ...]
    other_flops: float
    bytes_moved: float
    notes: str = ""

    @property
    def flops(self) -> float:
        return sum(product.flops for product in self.products) + self.other_flops

    @property
    def shapes(self) -> list[tuple[int, int, int]]:
        return sorted({product.shape for product in self.products})


@dataclass(frozen=True)
class Roofline:
    """A workload's time bound on a machine (seconds) and its parts."""

    flops: float
    bytes_moved: float
    compute_seconds: float
    memory_seconds: float
    bandwidth: float
    rates: dict = field(default_factory=dict)

    @property
    def bound_seconds(self) -> float:
        return max(self.compute_seconds, self.memory_seconds)

    @property
    def effective_rate(self) -> float:
        """FLOPs / compute seconds: the workload's products at their shapes' rates, in one number."""
        return self.flops / self.compute_seconds if self.compute_seconds else 0.0

    def fraction(self, measured_seconds: float) -> float:
        return fraction_of_ceiling(self.bound_seconds, measured_seconds)

    def line(self, label: str, measured_seconds: float) -> str:
        return (f"roofline {label}: measured {measured_seconds:.3f} s, bound {self.bound_seconds:.3f} s "
                f"(compute {self.compute_seconds:.3f} s: {self.flops / 1e12:.3f} TFLOP at "
                f"{self.effective_rate / 1e12:.3g} TFLOP/s; memory {self.memory_seconds:.3f} s: "
                f"{self.bytes_moved / 1e9:.2f} GB at {self.bandwidth / 1e9:.1f} GB/s), "
                f"{self.fraction(measured_seconds):.0%} of ceiling")


def time_bound(flops: float, bytes_moved: float, flop_rate: float, bandwidth: float) -> float:
    """Seconds no implementation can beat: max(FLOPs / rate, bytes / bandwidth)."""
    return max(flops / flop_rate, bytes_moved / bandwidth)


def fraction_of_ceiling(bound_seconds: float, measured_seconds: float) -> float:
    """bound / measured: 1.0 runs at the machine's ceiling, 0.25 takes four times the bound."""
    return bound_seconds / measured_seconds


def rates_measure(shapes, dtype, *, repeats: int = 5) -> dict[tuple[int, int, int], float]:
    """FLOP/s per (rows, inner, out) shape in `dtype` (matmul_rate)."""
    return {shape: matmul_rate(*shape, dtype, repeats=repeats) for shape in sorted(set(shapes))}


def roofline(workload: Workload, rates: dict[tuple[int, int, int], float], bandwidth: float) -> Roofline:
    """The workload's bound: each product at its shape's rate, other FLOPs at the best rate
    measured, bytes at the bandwidth (bytes/s)."""
    compute = sum(product.flops / rates[product.shape] for product in workload.products)
    if workload.other_flops:
        compute += workload.other_flops / max(rates.values())
    return Roofline(flops=workload.flops, bytes_moved=workload.bytes_moved, compute_seconds=compute,
                    memory_seconds=workload.bytes_moved / bandwidth, bandwidth=bandwidth, rates=dict(rates))


def rates_line(rates: dict[tuple[int, int, int], float], dtype_name: str) -> str:
    import torch

    shapes = ", ".join(f"{r}x{i}x{o} {rate / 1e12:.3g}" for (r, i, o), rate in sorted(rates.items()))
    return f"matrix-product rates ({dtype_name}, {torch.get_num_threads()} torch threads), rows x inner x out: TFLOP/s {shapes}"


@dataclass(frozen=True)
class ModelShape:
    """A llama-style decoder's sizes (the embedded SmolLM2-135M: hidden 576, intermediate 1536,
    vocabulary 49,152, 30 layers, 9 heads, 3 key/value heads of 64)."""

    hidden: int
    intermediate: int
    vocab: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int

    @classmethod
    def from_config(cls, config) -> "ModelShape":
        """From a transformers config object or its config.json as a dict."""
        read = config.get if isinstance(config, dict) else (lambda key, default=None: getattr(config, key, default))
        heads = read("num_attention_heads")
        return cls(hidden=read("hidden_size"), intermediate=read("intermediate_size"), vocab=read("vocab_size"),
                   layers=read("num_hidden_layers"), heads=heads, kv_heads=read("num_key_value_heads") or heads,
                   head_dim=read("head_dim") or read("hidden_size") // heads)

    def layer_products(self) -> list[tuple[str, int, int, int]]:
        """(name, inner, out, count) of one layer's products: q, k+v, o, gate+up, down."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return [("q", self.hidden, q, 1), ("k,v", self.hidden, kv, 2), ("o", q, self.hidden, 1),
                ("gate,up", self.hidden, self.intermediate, 2), ("down", self.intermediate, self.hidden, 1)]

    @property
    def body_params(self) -> int:
        """Weights in the layers' matrix products (norms and embeddings excluded)."""
        return self.layers * sum(inner * out * count for _, inner, out, count in self.layer_products())

    @property
    def head_params(self) -> int:
        return self.hidden * self.vocab

    def kv_bytes_per_position(self, element_bytes: int) -> int:
        """Keys and values of one position in every layer."""
        return 2 * self.layers * self.kv_heads * self.head_dim * element_bytes

    def attention_flops(self, context_sum: int) -> int:
        """Q K^T and A V of every layer for positions whose key counts sum to `context_sum`."""
        return 4 * self.layers * self.heads * self.head_dim * context_sum


def causal_context_sum(start: int, count: int) -> int:
    """Keys attended by `count` positions start..start+count-1 of a causal sequence (p + 1 each)."""
    return count * start + count * (count + 1) // 2


def forward_products(shape: ModelShape, *, body_tokens: int, head_tokens: int, body_rows: int,
                     head_rows: int) -> list[Product]:
    """The forward pass's products: every layer's on `body_tokens` positions (at `body_rows`
    rows a call), the output layer on `head_tokens` (at `head_rows`)."""
    products = [Product(name, body_rows, inner, out, float(matmul_flops(body_tokens, inner, out) * count * shape.layers))
                for name, inner, out, count in shape.layer_products()]
    if head_tokens:
        products.append(Product("lm_head", head_rows, shape.hidden, shape.vocab,
                                float(matmul_flops(head_tokens, shape.hidden, shape.vocab))))
    return products


def input_gradient_products(forward: list[Product]) -> list[Product]:
    """Backward through frozen weights: the gradient of each product's input, [rows x out] @
    [out x inner], as many FLOPs as the forward product (no weight gradient)."""
    return [Product(product.name + " grad", product.rows, product.out, product.inner, product.flops)
            for product in forward]


def ceiling_measure(workload: Workload, dtype, *, bandwidth: float | None = None,
                    rates_cache: dict | None = None) -> Roofline:
    """The workload's roofline on this machine now: its shapes' rates measured in `dtype`
    (reused from rates_cache, keyed by (shape, dtype), when given), the bandwidth measured unless given."""
    cache = rates_cache if rates_cache is not None else {}
    missing = [shape for shape in workload.shapes if (shape, dtype) not in cache]
    for shape, rate in rates_measure(missing, dtype).items():
        cache[(shape, dtype)] = rate
    rates = {shape: cache[(shape, dtype)] for shape in workload.shapes}
    return roofline(workload, rates, bandwidth if bandwidth is not None else memory_bandwidth())


def summary_row(*, benchmark: str, workload: str, dtype: str, measured_label: str, measured_seconds: float,
                baseline_label: str, baseline_seconds: float, ceiling: Roofline,
                baseline_ceiling: Roofline | None = None) -> dict:
    """One row of the per-machine table (run_all.py), in seconds. The baseline's fraction is of
    its own ceiling where its workload differed (other completions), else of the measured one's."""
    return {"benchmark": benchmark, "workload": workload, "dtype": dtype,
            "measured_label": measured_label, "measured_seconds": measured_seconds,
            "baseline_label": baseline_label, "baseline_seconds": baseline_seconds,
            "ceiling_seconds": ceiling.bound_seconds, "compute_seconds": ceiling.compute_seconds,
            "memory_seconds": ceiling.memory_seconds, "flops": ceiling.flops, "bytes_moved": ceiling.bytes_moved,
            "effective_rate": ceiling.effective_rate, "bandwidth": ceiling.bandwidth,
            "fraction": ceiling.fraction(measured_seconds), "baseline_fraction": (baseline_ceiling or ceiling).fraction(baseline_seconds)}


def summary_write(path, rows: list[dict]) -> None:
    """The rows as JSON (run_all.py reads them back)."""
    import json

    with open(path, "w") as out:
        json.dump({"rows": rows, "load_average_end": os.getloadavg()[0]}, out, indent=1)
