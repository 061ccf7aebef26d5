"""Tokens per second of the transformers generation backend on the embedded model, by batch size.

The same 64 generation prompts (the stage-2 prompt with public seed examples), the same
max_new_tokens, sampling at temperature 0.9; each batch size is one run after a warm-up batch.

    .venv/bin/python benchmarks/generation.py                       # batch 1 4 16 64, fp32
    .venv/bin/python benchmarks/generation.py --dtype bfloat16 --batches 16 64
"""
import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ksg_web.settings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()

    import django

    django.setup()
    import torch
    from django.conf import settings

    from synthesis.generation import SamplingParams, TransformersBackend
    from synthesis.loader import EMBEDDED_MODEL, causal_lm_load
    from synthesis.prompts import generation_prompts

    started = time.perf_counter()
    model, tokenizer = causal_lm_load(EMBEDDED_MODEL, cache_dir=settings.KSG_MODEL_CACHE, dtype=getattr(torch, args.dtype))
    load_seconds = time.perf_counter() - started
    prompts = generation_prompts(domain="medical", count=args.prompts, few_shot=3, seed=0)
    sampling = SamplingParams(temperature=0.9, top_p=0.95, max_new_tokens=args.max_new_tokens, seed=0)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    print(f"commit {commit}, {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {args.dtype}, "
          f"{args.prompts} prompts, max_new_tokens {args.max_new_tokens}, model load {load_seconds:.2f} s")
    print(f"{'batch':>5} {'seconds':>8} {'new tokens':>10} {'tokens/s':>9} {'vs batch 1':>10}")
    single = None
    for batch in args.batches:
        backend = TransformersBackend(model, tokenizer, max_batch_size=batch)
        backend.generate(prompts[:batch], sampling)  # warm-up
        started = time.perf_counter()
        completions = backend.generate(prompts, sampling)
        seconds = time.perf_counter() - started
        tokens = sum(c.completion_tokens for c in completions)
        rate = tokens / seconds
        single = single or (rate if batch == 1 else None)
        ratio = f"{rate / single:.1f}x" if single else "-"
        print(f"{batch:>5} {seconds:>8.1f} {tokens:>10} {rate:>9.1f} {ratio:>10}", flush=True)


if __name__ == "__main__":
    main()
