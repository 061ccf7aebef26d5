"""Generated tokens per second of the generation backend on the embedded model: plain
`model.generate` (the baseline, fp32 and bf16) against the continuous-batching engine.

The workload is what the pipeline sends: the stage-2 prompts (system prompt + 3 public seed
examples, about 100-125 tokens) and the stage-4 distillation prompts (system prompt + one seed
instruction, about 50-75 tokens), mixed in one request, sampling at temperature 0.9 / top_p 0.95.
Each configuration runs `--repeats` times after a warm-up; the table gives the median, the
prompt and generated token counts, and the process's peak RSS so far. A greedy check compares
the engine's tokens with plain `generate` one prompt at a time, in fp32 (should be identical) and
in bf16 (reported as the share of prompts whose first N tokens agree).

Each configuration also gets its roofline (benchmarks/roofline.py): the FLOPs and bytes the
request needs (benchmarks/workloads.generation_workload, from its prompt and completion token
counts) against the matrix-product rates measured here at its shapes and dtype and the memory
bandwidth; the bound, and the fraction of it reached, is printed beside the baseline's (the
first plain `generate` of the same dtype, else the first configuration).

    .venv/bin/python benchmarks/generation.py                       # baseline fp32 + bf16, engine bf16
    .venv/bin/python benchmarks/generation.py --configs engine:bfloat16 --repeats 5
    .venv/bin/python benchmarks/generation.py --workload stage4 --prompts 128 --max-new-tokens 96
"""
import argparse
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


def workload(count: int, kind: str):
    from synthesis.prompts import distill_prompts, generation_prompts, seed_instructions

    stage2 = generation_prompts(domain="medical", count=count, few_shot=3, seed=0)
    seeds = list(seed_instructions("medical"))
    stage4 = distill_prompts([seeds[i % len(seeds)] for i in range(count)], domain="medical")
    if kind == "stage2":
        return stage2
    if kind == "stage4":
        return stage4
    return [prompt for pair in zip(stage2, stage4) for prompt in pair]  # interleaved: mixed lengths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["generate:float32", "generate:bfloat16", "engine:bfloat16"],
                        help="path:dtype, path one of generate (plain model.generate) and engine")
    parser.add_argument("--prompts", type=int, default=64, help="prompts of each stage (mixed: the request has twice as many)")
    parser.add_argument("--workload", default="mixed", choices=["mixed", "stage2", "stage4"],
                        help="both stages' prompts interleaved, or one stage's")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64, help="batch size of plain generate")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--greedy-prompts", type=int, default=16, help="prompts in the greedy check (0 skips it)")
    parser.add_argument("--greedy-tokens", type=int, default=32)
    parser.add_argument("--roofline-json", type=Path, default=None, help="also write the roofline rows here (run_all.py)")
    args = parser.parse_args()

    import django

    django.setup()
    import torch
    from django.conf import settings

    from benchmarks import roofline
    from synthesis.lm.generation import SamplingParams, TransformersBackend
    from synthesis.lm.loader import EMBEDDED_MODEL, causal_lm_load

    machine = roofline.machine_describe()

    prompts = workload(args.prompts, args.workload)
    sampling = SamplingParams(temperature=0.9, top_p=0.95, max_new_tokens=args.max_new_tokens, seed=0)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    print(f"commit {commit}, {platform.machine()}, {os.cpu_count()} CPUs, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{len(prompts)} prompts ({args.workload}), max_new_tokens {args.max_new_tokens}, median of {args.repeats}")
    print(f"machine: {machine.line()}")
    print(f"{'path':>8} {'dtype':>8} {'load s':>6} {'seconds':>8} {'prompt tok':>10} {'new tok':>8} {'new tok/s':>9} "
          f"{'all tok/s':>9} {'vs base':>7} {'peak MB':>8}")
    base_rate, models, measured = None, {}, []  # measured: (path, dtype, seconds, completions)
    for config in args.configs:
        path, dtype_name = config.split(":")
        dtype = getattr(torch, dtype_name)
        started = time.perf_counter()
        if dtype_name not in models:
            models[dtype_name] = causal_lm_load(EMBEDDED_MODEL, cache_dir=settings.KSG_MODEL_CACHE, dtype=dtype)
        load = time.perf_counter() - started
        model, tokenizer = models[dtype_name]
        backend = TransformersBackend(model, tokenizer, max_batch_size=args.batch if path == "generate" else None,
                                      engine=path == "engine")
        backend.generate(prompts[:8], sampling)  # warm-up
        runs = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            completions = backend.generate(prompts, sampling)
            runs.append((time.perf_counter() - started, completions))
        seconds, completions = sorted(runs, key=lambda run: run[0])[len(runs) // 2]
        new = sum(c.completion_tokens for c in completions)
        prompt_tokens = sum(c.prompt_tokens for c in completions)
        rate = new / seconds
        base_rate = base_rate or rate
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        measured.append((path, dtype_name, seconds, completions))
        print(f"{path:>8} {dtype_name:>8} {load:>6.2f} {seconds:>8.1f} {prompt_tokens:>10} {new:>8} {rate:>9.1f} "
              f"{(new + prompt_tokens) / seconds:>9.1f} {rate / base_rate:>6.1f}x {peak:>8.0f}", flush=True)
        if path == "engine" and backend.last_engine is not None:
            stats = backend.last_engine.stats
            print(f"{'':>8} engine steps {stats.steps}, max running {stats.max_running}, shared prefix "
                  f"{stats.prefix_tokens} tokens x {stats.prefix_hits} prompts, prefill {stats.prefill_tokens}")

    rows = roofline_report(measured, prompts, models, args)
    if args.roofline_json:
        roofline.summary_write(args.roofline_json, rows)
    print(f"machine: {machine.line(os.getloadavg()[0])}", flush=True)

    if args.greedy_prompts:
        print(f"greedy check: {args.greedy_prompts} prompts, {args.greedy_tokens} new tokens, engine vs plain generate "
              f"one prompt at a time")
        greedy = SamplingParams(temperature=0.0, max_new_tokens=args.greedy_tokens)
        chosen = prompts[:args.greedy_prompts]
        for dtype_name in ("float32", "bfloat16"):
            if dtype_name not in models:
                models[dtype_name] = causal_lm_load(EMBEDDED_MODEL, cache_dir=settings.KSG_MODEL_CACHE,
                                                    dtype=getattr(torch, dtype_name))
            model, tokenizer = models[dtype_name]
            fast = TransformersBackend(model, tokenizer).generate(chosen, greedy)
            plain = TransformersBackend(model, tokenizer, max_batch_size=1, engine=False)
            reference = plain.generate(chosen, greedy)
            same = sum(f.text == r.text for f, r in zip(fast, reference))
            agree = []
            for messages, f, r in zip(chosen, fast, reference):
                a, b = (tokenizer(x.text, add_special_tokens=False)["input_ids"] for x in (f, r))
                agree.append(next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b))))
            print(f"  {dtype_name}: identical texts {same}/{len(chosen)}, tokens agreeing before the first "
                  f"difference: median {statistics.median(agree)}, min {min(agree)}")


def roofline_report(measured: list, prompts: list, models: dict, args) -> list[dict]:
    """Print each configuration's roofline line (rates measured now, at the request's shapes in its
    dtype) and return the table rows: every non-baseline configuration against its baseline."""
    import inspect

    import torch

    from benchmarks import roofline
    from benchmarks.workloads import generation_workload
    from synthesis.lm.engine import DecodeEngine
    from synthesis.lm.generation import prompt_token_ids, shared_prefixes

    engine_defaults = inspect.signature(DecodeEngine.__init__).parameters
    decode_rows = min(len(prompts), engine_defaults["max_sequences"].default)
    tokens_per_pass = engine_defaults["step_tokens"].default
    bandwidth, rates_cache, ceilings = roofline.memory_bandwidth(), {}, []
    for path, dtype_name, seconds, completions in measured:
        model, tokenizer = models[dtype_name]
        encoded = [prompt_token_ids(tokenizer, messages) for messages in prompts]
        prefixes = shared_prefixes(encoded)
        shared = [max((len(p) for p in prefixes if len(ids) > len(p) and ids[:len(p)] == p), default=0)
                  for ids in encoded]
        workload = generation_workload(roofline.ModelShape.from_config(model.config),
                                       prompt_lengths=[len(ids) for ids in encoded], shared_lengths=shared,
                                       new_tokens=[c.completion_tokens for c in completions],
                                       element_bytes=getattr(torch, dtype_name).itemsize, decode_rows=decode_rows,
                                       tokens_per_pass=tokens_per_pass)
        ceiling = roofline.ceiling_measure(workload, getattr(torch, dtype_name), bandwidth=bandwidth,
                                           rates_cache=rates_cache)
        ceilings.append(ceiling)
        print(f"{ceiling.line(f'{path} {dtype_name}', seconds)}; {workload.notes}")
    for dtype_name in dict.fromkeys(dtype for _, dtype, _, _ in measured):
        rates = {shape: rate for (shape, dtype), rate in rates_cache.items() if dtype == getattr(torch, dtype_name)}
        print(roofline.rates_line(rates, dtype_name))
    rows = []
    for index, (path, dtype_name, seconds, _) in enumerate(measured):
        base = next((i for i, (p, d, _, _) in enumerate(measured) if p == "generate" and d == dtype_name), 0)
        if index == base:
            continue
        rows.append(roofline.summary_row(
            benchmark="generation", workload=f"{args.workload}, {len(prompts)} prompts, {args.max_new_tokens} new tokens",
            dtype=dtype_name, measured_label=path, measured_seconds=seconds,
            baseline_label=f"{measured[base][0]} {measured[base][1]}", baseline_seconds=measured[base][2],
            ceiling=ceilings[index], baseline_ceiling=ceilings[base]))
    return rows


if __name__ == "__main__":
    main()
