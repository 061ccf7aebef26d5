"""Seconds until the embedded model is ready, after its one-time conversion: each run is a fresh
process (as a worker starting a stage) that imports torch and transformers, then loads the model
and tokenizer the way the stages do (causal_lm_load, in the dtype given) and runs one forward
pass. "cold": nothing else imported first; "warm": after synthesis.lm.loader.loader_warm, which a
Celery worker runs when it starts (ksg_web/celery.py). "ready" counts from after the imports.

    .venv/bin/python benchmarks/model_load.py --repeats 5
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ksg_web.settings")


def child(dtype_name: str, warm: bool) -> dict:
    started = time.perf_counter()
    import django

    django.setup()
    import torch
    import transformers  # noqa: F401
    from django.conf import settings

    from synthesis.lm.loader import EMBEDDED_MODEL, causal_lm_load, embedded_model_dir

    embedded_model_dir(cache_dir=settings.KSG_MODEL_CACHE)  # converted already: a check only
    if warm:  # as a Celery worker does when it starts (ksg_web/celery.py)
        from synthesis.lm.loader import loader_warm

        loader_warm()
    imported = time.perf_counter()
    model, tokenizer = causal_lm_load(EMBEDDED_MODEL, cache_dir=settings.KSG_MODEL_CACHE, dtype=getattr(torch, dtype_name))
    loaded = time.perf_counter()
    with torch.inference_mode():
        model(torch.tensor([tokenizer("Hello")["input_ids"]]))
    ready = time.perf_counter()
    return {"imports": imported - started, "load": loaded - imported, "first_forward": ready - loaded,
            "ready": ready - imported}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--warm", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.warm)))
        return
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    print(f"commit {commit}; median of {args.repeats} fresh processes; seconds")
    print(f"{'dtype':>9} {'worker':>7} {'imports':>8} {'load':>6} {'1st fwd':>8} {'ready':>6}")
    for dtype in args.dtypes:
        for warm in (False, True):
            runs = []
            for _ in range(args.repeats):
                out = subprocess.run([sys.executable, __file__, "--child", dtype] + (["--warm"] if warm else []),
                                     capture_output=True, text=True, check=True)
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
            print(f"{dtype:>9} {'warm' if warm else 'cold':>7} {median['imports']:>8.2f} {median['load']:>6.2f} "
                  f"{median['first_forward']:>8.2f} {median['ready']:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
