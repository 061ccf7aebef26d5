"""DP vs non-DP LoRA step on the embedded model: seconds per step, peak memory, ratio.
With --records-per-unit K, also the user-level DP step (privacy.dp.units) on the same records,
grouped into batch / K persons of K records: per-record gradients summed per person, each
person's sum clipped, noise on the total.

Same model (SmolLM2-135M-Instruct, LoRA r=8 on q_proj/v_proj, the LoRA weights fp32), same
batches of demo medical records at max length 64; the DP step adds Opacus per-example gradients,
clipping and noise. Each (mode, batch) runs in its own process so peak RSS is its own. The
defaults are what training runs with on a machine with fast bf16 (synthesis.lm.loader.
training_model_load); the flags give the reference settings.

    .venv/bin/python benchmarks/dp_step.py                 # batches 8 16 32, 6 timed steps, median of 3 runs
    .venv/bin/python benchmarks/dp_step.py --dtype float32 --attention sdpa --full-logits   # the old path
    .venv/bin/python benchmarks/dp_step.py --records-per-unit 4   # + the user-level step, 4 records a person

After the table, each batch's roofline (benchmarks/roofline.py): the FLOPs and bytes of a step
(benchmarks/workloads.training_workload: forward, the input gradients through the frozen base
weights, the adapters' gradients, from the timed steps' token counts) against the matrix-product
rates measured here at the step's shapes in the base weights' dtype and the memory bandwidth;
the DP step's time and the non-DP step's (its baseline) as fractions of that bound.
"""
import argparse
import dataclasses
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ksg_web.settings")


def measure(mode: str, batch: int, steps: int, max_length: int, dtype_name: str, full_logits: bool,
            attention: str, records_per_unit: int = 0) -> dict:
    import django

    django.setup()
    import torch
    from django.conf import settings

    from privacy.demo_data import demo_records
    from benchmarks.roofline import ModelShape
    from privacy.dp.train import IGNORE_INDEX, DPTrainConfig, collate, examples_tokenize, lora_wrap, per_example_loss
    from synthesis.lm.loader import EMBEDDED_MODEL, causal_lm_load

    torch.manual_seed(0)
    model, tokenizer = causal_lm_load(EMBEDDED_MODEL, cache_dir=settings.KSG_MODEL_CACHE,
                                      dtype=getattr(torch, dtype_name))
    model.set_attn_implementation(attention)
    shape = dataclasses.asdict(ModelShape.from_config(model.config))
    config = DPTrainConfig(target_epsilon=4.0, delta=1e-5, steps=steps, epochs=None, max_length=max_length,
                           logical_batch_size=batch, physical_batch_size=batch)
    model = lora_wrap(model, config)
    examples = examples_tokenize(demo_records(domain="medical", n=batch * (steps + 1), seed=0), tokenizer,
                                 max_length=max_length)
    batches = [collate(tokenizer.pad_token_id)(examples[i * batch:(i + 1) * batch]) for i in range(steps + 1)]
    timed = examples[batch:(steps + 1) * batch]  # the steps after the warm-up: the roofline's workload
    counts = {"shape": shape, "lengths": [len(ids) for ids, _ in timed], "lora_rank": config.lora_rank,
              "lora_targets": list(config.target_modules),
              "scored": [sum(label != IGNORE_INDEX for label in labels[1:]) for _, labels in timed]}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    if mode == "units":
        return {**counts, **measure_units(model, optimizer, examples, batch, steps, records_per_unit, full_logits,
                                          tokenizer.pad_token_id)}
    if mode == "dp":
        import warnings

        from opacus import GradSampleModule
        from opacus.optimizers import DPOptimizer

        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        model = GradSampleModule(model)
        optimizer = DPOptimizer(optimizer, noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=batch)
    model.train()
    times = []
    for index, (input_ids, attention, labels) in enumerate(batches):
        started = time.perf_counter()
        per_example_loss(model, input_ids, attention, labels, full_logits=full_logits).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
        if index:  # the first step warms up
            times.append(time.perf_counter() - started)
    return {"mode": mode, "batch": batch, "seconds_per_step": statistics.median(times),
            "examples_per_second": batch / statistics.median(times),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **counts}


def measure_units(model, optimizer, examples, batch: int, steps: int, records_per_unit: int, full_logits: bool,
                  pad_id: int) -> dict:
    """The user-level step on `batch` records a step, batch / records_per_unit persons of
    records_per_unit records each: per-record gradients, summed and clipped per person, noise."""
    import warnings

    import torch
    from opacus import GradSampleModule

    from privacy.dp.train import collate, per_example_loss
    from privacy.dp.units import noisy_step, unit_gradients_clipped_sum

    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    trainable = [p for p in model.parameters() if p.requires_grad]
    grad_model = GradSampleModule(model, loss_reduction="sum")
    model.train()
    persons = [list(range(start, min(start + records_per_unit, batch))) for start in range(0, batch, records_per_unit)]
    noise_rng = torch.Generator().manual_seed(0)
    times = []
    for index in range(steps + 1):
        step_examples = examples[index * batch:(index + 1) * batch]
        started = time.perf_counter()
        clipped_sum, _ = unit_gradients_clipped_sum(
            lambda part: per_example_loss(grad_model, *collate(pad_id)(part), full_logits=full_logits),
            step_examples, persons, trainable=trainable, max_grad_norm=1.0, physical_batch_size=batch)
        noisy_step(optimizer, trainable, clipped_sum, noise_multiplier=1.0, max_grad_norm=1.0,
                   expected_units=len(persons), generator=noise_rng)
        if index:  # the first step warms up
            times.append(time.perf_counter() - started)
    return {"mode": "units", "batch": batch, "seconds_per_step": statistics.median(times),
            "examples_per_second": batch / statistics.median(times),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="processes per (mode, batch), alternating modes")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"],
                        help="of the frozen base weights (LoRA weights stay fp32)")
    parser.add_argument("--full-logits", action="store_true",
                        help="the reference loss: logits at every position, not only the scored ones")
    parser.add_argument("--attention", default="eager", choices=["eager", "sdpa"])
    parser.add_argument("--records-per-unit", type=int, default=0, metavar="K",
                        help="also time the user-level DP step, the batch's records as persons of K records (0: off)")
    parser.add_argument("--roofline-json", type=Path, default=None, help="also write the roofline rows here (run_all.py)")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], int(args.child[1]), args.steps, args.max_length, args.dtype,
                                 args.full_logits, args.attention, args.records_per_unit)))
        return
    from benchmarks import roofline

    machine = roofline.machine_describe()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    print(f"machine: {machine.line()}")
    print(f"commit {commit}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch threads default, max_length {args.max_length}, base weights {args.dtype}, {args.attention} attention, "
          f"{'full' if args.full_logits else 'scored-only'} logits; per run the median of {args.steps} "
          f"steps after one warm-up, the median of {args.repeats} runs per mode")
    modes = ("plain", "dp", "units") if args.records_per_unit else ("plain", "dp")
    units_header = f" {f'units(K={args.records_per_unit}) s/step':>19} {'units/DP':>8} {'units MB':>8}"
    print(f"{'batch':>5} {'non-DP s/step':>13} {'DP s/step':>10} {'ratio':>6} {'non-DP ex/s':>11} {'DP ex/s':>8} "
          f"{'non-DP MB':>9} {'DP MB':>7}" + (units_header if args.records_per_unit else ""))
    medians = {}
    for batch in args.batches:
        runs = {mode: [] for mode in modes}
        for _ in range(args.repeats):
            for mode in modes:  # alternate, so drift in machine load hits every mode alike
                out = subprocess.run([sys.executable, __file__, "--child", mode, str(batch), "--steps", str(args.steps),
                                      "--max-length", str(args.max_length), "--dtype", args.dtype,
                                      "--attention", args.attention, "--records-per-unit", str(args.records_per_unit)]
                                     + (["--full-logits"] if args.full_logits else []),
                                     capture_output=True, text=True, check=True)
                runs[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
        median = {mode: sorted(runs[mode], key=lambda run: run["seconds_per_step"])[len(runs[mode]) // 2]
                  for mode in modes}  # the median run of each mode
        medians[batch] = median
        plain, dp = median["plain"], median["dp"]
        line = (f"{batch:>5} {plain['seconds_per_step']:>13.3f} {dp['seconds_per_step']:>10.3f} "
                f"{dp['seconds_per_step'] / plain['seconds_per_step']:>6.2f} {plain['examples_per_second']:>11.1f} "
                f"{dp['examples_per_second']:>8.1f} {plain['peak_rss_mb']:>9.0f} {dp['peak_rss_mb']:>7.0f}")
        if "units" in median:
            units = median["units"]
            line += (f" {units['seconds_per_step']:>19.3f} {units['seconds_per_step'] / dp['seconds_per_step']:>8.2f} "
                     f"{units['peak_rss_mb']:>8.0f}")
        print(line, flush=True)
    rows = roofline_report(medians, args)
    if args.roofline_json:
        roofline.summary_write(args.roofline_json, rows)
    print(f"machine: {machine.line(os.getloadavg()[0])}", flush=True)


def roofline_report(medians: dict, args) -> list[dict]:
    """Print each batch's roofline lines (rates measured now at the step's shapes in the base
    weights' dtype) and return the table rows: the DP step against the non-DP step."""
    import torch

    from benchmarks import roofline
    from benchmarks.workloads import training_workload

    dtype, bandwidth, rates_cache, rows = getattr(torch, args.dtype), roofline.memory_bandwidth(), {}, []
    for batch, median in medians.items():
        counts = median["dp"]
        workload = training_workload(roofline.ModelShape(**counts["shape"]), lengths=counts["lengths"],
                                     scored=counts["scored"], steps=args.steps, lora_rank=counts["lora_rank"],
                                     lora_targets=tuple(counts["lora_targets"]), element_bytes=dtype.itemsize)
        ceiling = roofline.ceiling_measure(workload, dtype, bandwidth=bandwidth, rates_cache=rates_cache)
        for mode, run in median.items():
            print(f"{ceiling.line(f'batch {batch} {mode}', run['seconds_per_step'])}; {workload.notes}")
        rows.append(roofline.summary_row(
            benchmark="dp_step", workload=f"DP-LoRA step, batch {batch}, max_length {args.max_length}",
            dtype=args.dtype, measured_label="DP step", measured_seconds=median["dp"]["seconds_per_step"],
            baseline_label="non-DP step", baseline_seconds=median["plain"]["seconds_per_step"], ceiling=ceiling))
    print(roofline.rates_line({shape: rate for (shape, _), rate in rates_cache.items()}, args.dtype))
    return rows


if __name__ == "__main__":
    main()
