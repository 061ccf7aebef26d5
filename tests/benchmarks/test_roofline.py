"""The roofline arithmetic (benchmarks/roofline.py, benchmarks/workloads.py) and the table
(benchmarks/run_all.py): FLOP and byte counts checked by hand on a tiny model shape."""
import math
from types import SimpleNamespace

import pytest

from benchmarks import roofline
from benchmarks.roofline import ModelShape, Product, Workload
from benchmarks.run_all import machine_slug, markdown, versus
from benchmarks.workloads import generation_workload, scoring_workload, training_workload

SMOLLM2_CONFIG = {"hidden_size": 576, "intermediate_size": 1536, "vocab_size": 49152, "num_hidden_layers": 30,
                  "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64}
# per token: q 16, k+v 16, o 16, gate+up 64, down 32 = 144 weights in the layer; 40 in the output layer
TINY = ModelShape(hidden=4, intermediate=8, vocab=10, layers=1, heads=2, kv_heads=1, head_dim=2)
LSCPU = """Architecture:            x86_64
CPU(s):                  2
Model name:              AMD EPYC
CPU family:              25
Model:                   17
Flags:                   fpu sse avx2 avx512f avx512_bf16 avx512_vnni
"""


def test_matmul_flops_counts_a_multiply_and_an_add_per_term():
    assert roofline.matmul_flops(2, 3, 4) == 48


def test_time_bound_is_the_slower_of_compute_and_memory():
    assert roofline.time_bound(1e12, 1e9, flop_rate=1e12, bandwidth=1e10) == pytest.approx(1.0)
    assert roofline.time_bound(1e9, 1e10, flop_rate=1e12, bandwidth=1e9) == pytest.approx(10.0)


def test_fraction_of_ceiling_is_bound_over_measured():
    assert roofline.fraction_of_ceiling(2.0, 8.0) == 0.25


def test_roofline_times_each_product_at_its_shapes_rate_and_other_flops_at_the_best():
    workload = Workload(name="w", products=(Product("a", 8, 4, 4, 2e12), Product("b", 64, 4, 4, 3e12)),
                        other_flops=1e12, bytes_moved=4e9)
    ceiling = roofline.roofline(workload, {(8, 4, 4): 1e12, (64, 4, 4): 3e12}, bandwidth=1e9)
    assert ceiling.compute_seconds == pytest.approx(2 + 1 + 1 / 3)
    assert ceiling.memory_seconds == pytest.approx(4.0)
    assert ceiling.bound_seconds == pytest.approx(4.0)
    assert ceiling.fraction(8.0) == pytest.approx(0.5)
    assert ceiling.effective_rate == pytest.approx(6e12 / (10 / 3))
    assert "50% of ceiling" in ceiling.line("x", 8.0)


def test_smollm2_shape_gives_the_documented_flops_per_token():
    shape = ModelShape.from_config(SMOLLM2_CONFIG)
    assert shape.body_params == 106_168_320
    assert shape.head_params == 28_311_552
    assert 2 * (shape.body_params + shape.head_params) == pytest.approx(0.269e9, rel=0.01)  # docs/PERFORMANCE.md
    assert shape.kv_bytes_per_position(2) == 2 * 30 * 3 * 64 * 2


def test_model_shape_from_a_config_object_derives_head_dim():
    config = SimpleNamespace(hidden_size=8, intermediate_size=16, vocab_size=10, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=None)
    shape = ModelShape.from_config(config)
    assert (shape.head_dim, shape.kv_heads) == (2, 4)


def test_causal_context_sum_counts_keys_attended():
    assert roofline.causal_context_sum(0, 3) == 1 + 2 + 3
    assert roofline.causal_context_sum(2, 3) == 3 + 4 + 5


def test_generation_workload_counts_a_shared_prefix_once_and_the_kv_reads():
    # two prompts of 5 and 6 tokens starting with one 3-token prefix, 2 and 3 new tokens
    workload = generation_workload(TINY, prompt_lengths=[5, 6], shared_lengths=[3, 3], new_tokens=[2, 3],
                                   element_bytes=2, decode_rows=2, tokens_per_pass=512)
    # positions: prefix 3 + own 2 + 3 prefilled, then 1 + 2 decoded; output layer at 5 new tokens
    products = 2 * 144 * (8 + 3) + 2 * 40 * 5
    attention = 4 * 1 * 2 * 2 * (6 + (4 + 5 + 6) + (4 + 5 + 6 + 7 + 8))
    assert workload.flops == products + attention
    # 3 passes (the longest completion) read all 184 weights; KV: own contexts 3 and 4 + 5, prefix 3 x 2 passes
    assert workload.bytes_moved == 3 * 184 * 2 + (3 + 9 + 6) * (2 * 1 * 1 * 2 * 2)
    assert {product.rows for product in workload.products if product.name.startswith("prefill")} == {8}


def test_training_workload_counts_input_gradients_lora_and_attention():
    workload = training_workload(TINY, lengths=[4, 3], scored=[2, 1], steps=1, lora_rank=1,
                                 lora_targets=("q_proj",), element_bytes=2)
    forward = 2 * 144 * 5 + 2 * 40 * 3  # 5 positions (each example's last is not run), 3 scored
    attention = 4 * 1 * 2 * 2 * (6 + 3)
    lora = 3 * 2 * 5 * (1 * (4 + 4))
    assert workload.flops == 2 * forward + 3 * attention + lora
    assert workload.bytes_moved == 2 * 184 * 2
    halved = training_workload(TINY, lengths=[4, 3, 4, 3], scored=[2, 1, 2, 1], steps=2, lora_rank=1,
                               lora_targets=("q_proj",), element_bytes=2)
    assert halved.flops == pytest.approx(workload.flops)  # per step


def test_scoring_workload_runs_the_shared_ids_once_and_the_head_where_scored():
    calls = [[([1, 2, 3, 4], [-100, -100, 3, 4]), ([1, 2, 5], [-100, -100, 5])]]
    workload = scoring_workload(TINY, calls=calls, element_bytes=4, tokens_per_pass=2048)
    # ids 1, 2 shared: position 0 cached once; own positions 1, 2 and 1; 3 scored tokens
    assert workload.flops == 2 * 144 * 4 + 2 * 40 * 3 + 4 * 1 * 2 * 2 * (1 + (2 + 3) + 2)
    assert workload.bytes_moved == 184 * 4


def test_machine_from_lscpu_keeps_the_flags_that_decide_the_dtype():
    machine = roofline.machine_describe(LSCPU)
    assert (machine.model_name, machine.family, machine.model, machine.cores) == ("AMD EPYC", "25", "17", 2)
    assert machine.flags == ("avx2", "avx512f", "avx512_bf16")
    assert "load average" in machine.line(1.5) and "1.50 at end" in machine.line(1.5)
    assert machine_slug(machine) == "amd-epyc-25-17"


def test_measured_rate_and_bandwidth_are_positive_and_finite():
    import torch

    rate = roofline.matmul_rate(16, 32, 32, torch.float32, repeats=2, min_seconds=0.001)
    bandwidth = roofline.memory_bandwidth(4, repeats=2)
    assert 0 < rate < math.inf and 0 < bandwidth < math.inf


def test_table_says_the_direction_against_the_baseline_and_a_shared_cpu():
    assert versus(3.0, 1.0) == "3.00x faster"
    assert versus(1.0, 1.25) == "1.25x slower"
    machine = roofline.machine_describe(LSCPU)
    row = {"benchmark": "dp_step", "workload": "w", "dtype": "bfloat16", "measured_label": "DP step",
           "measured_seconds": 2.0, "baseline_label": "non-DP step", "baseline_seconds": 1.0, "ceiling_seconds": 0.5,
           "compute_seconds": 0.5, "memory_seconds": 0.1, "flops": 1e12, "bytes_moved": 1e9, "effective_rate": 2e12,
           "bandwidth": 1e10, "fraction": 0.25, "baseline_fraction": 0.5}
    text = markdown(machine, 3.0, [row], "header")
    assert "**25%**" in text and "2.00x slower" in text and "(50% of ceiling)" in text
    assert "not speed figures" in text


def test_table_flags_a_fraction_above_one_as_no_result():
    machine = roofline.machine_describe(LSCPU)
    row = {"benchmark": "generation", "workload": "w", "dtype": "float32", "measured_label": "engine",
           "measured_seconds": 1.0, "baseline_label": "generate", "baseline_seconds": 2.0, "ceiling_seconds": 1.5,
           "compute_seconds": 1.5, "memory_seconds": 0.1, "flops": 1e12, "bytes_moved": 1e9, "effective_rate": 1e12,
           "bandwidth": 1e10, "fraction": 1.5, "baseline_fraction": 0.75}
    assert "above 100% is no result" in markdown(machine, 0.0, [row], "header")
