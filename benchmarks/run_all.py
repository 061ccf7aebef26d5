"""Run the benchmarks that have a roofline (generation, the DP step, the attacks' scoring) at short
sizes and write the per-machine table docs/PERFORMANCE.md shows: the machine, then one row per
benchmark with its time, its baseline's from the same run, and the fraction of this machine's
ceiling each reached (benchmarks/roofline.py says how the ceiling is measured).

    .venv/bin/python benchmarks/run_all.py                          # the table on stdout
    .venv/bin/python benchmarks/run_all.py --out-dir docs/perf      # also docs/perf/<machine>.md
    .venv/bin/python benchmarks/run_all.py --tiny                   # a smoke run of a few minutes
    make bench                                                       # = --out-dir docs/perf

The benchmarks' own output goes to stderr; the markdown to stdout (and the file). Run it on an
otherwise idle machine: the table states the load average at start and end, and says when the
CPU was shared, in which case its times are not speed figures.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (benchmark, its arguments at the short sizes, at the tiny ones); {dtype} is the generation dtype
BENCHMARKS = (
    ("generation",
     ["--configs", "generate:{dtype}", "engine:{dtype}", "--prompts", "32", "--max-new-tokens", "48",
      "--repeats", "1", "--greedy-prompts", "0"],
     ["--configs", "generate:{dtype}", "engine:{dtype}", "--prompts", "4", "--max-new-tokens", "8",
      "--repeats", "1", "--greedy-prompts", "0"]),
    ("dp_step",
     ["--batches", "8", "--steps", "3", "--repeats", "1"],
     ["--batches", "2", "--steps", "2", "--repeats", "1", "--max-length", "32"]),
    ("evaluation",
     ["--paths", "old", "new", "--dtypes", "float32", "--targets", "2", "--candidates", "20", "--members", "10",
      "--references", "100"],
     ["--paths", "old", "new", "--dtypes", "float32", "--targets", "1", "--candidates", "5", "--members", "3",
      "--references", "10"]),
)


def machine_slug(machine) -> str:
    """A file name for the machine kind: its model name, family and model ("amd-epyc-25-17")."""
    name = re.sub(r"\(r\)|\(tm\)|processor|cpu", "", machine.model_name.lower())
    return "-".join(filter(None, re.sub(r"[^a-z0-9]+", "-", name).split("-") + [machine.family, machine.model]))


def versus(baseline_seconds: float, measured_seconds: float) -> str:
    """How the measured time compares with the baseline's, in words that say the direction."""
    ratio = baseline_seconds / measured_seconds
    return f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower"


def table_row(row: dict) -> str:
    ceiling = (f"{row['ceiling_seconds']:.2f} s (compute {row['compute_seconds']:.2f} s: "
               f"{row['flops'] / 1e12:.3g} TFLOP at {row['effective_rate'] / 1e12:.3g} TFLOP/s; memory "
               f"{row['memory_seconds']:.2f} s: {row['bytes_moved'] / 1e9:.3g} GB at {row['bandwidth'] / 1e9:.3g} GB/s)")
    return (f"| {row['benchmark']}: {row['workload']} | {row['dtype']} | {row['measured_label']} "
            f"{row['measured_seconds']:.2f} s | {row['baseline_label']} {row['baseline_seconds']:.2f} s "
            f"({row['baseline_fraction']:.0%} of ceiling) | {versus(row['baseline_seconds'], row['measured_seconds'])} "
            f"| {ceiling} | **{row['fraction']:.0%}** |")


def markdown(machine, load_end: float, rows: list[dict], header: str) -> str:
    shared = max(machine.load_average, load_end) > 0.5 * machine.cores
    lines = [f"Machine: {machine.line(load_end)}.", "", header, ""]
    if shared:
        load = max(machine.load_average, load_end)
        lines += [(f"**The CPU was shared** (load average up to {load:.2f} on {machine.cores} cores): "
                   "these times and ceilings are not speed figures."), ""]
    lines += ["| workload | dtype | measured | baseline (same run) | vs baseline | ceiling (bound) | fraction of ceiling |",
              "|---|---|---:|---:|---:|---|---:|"]
    lines += [table_row(row) for row in rows]
    if any(row["fraction"] > 1 or row["baseline_fraction"] > 1 for row in rows):
        lines += ["", ("A fraction above 100% is no result: the rates are measured after the timed run, and the "
                       "machine had less to spare then than during the run. Rerun it on an idle machine.")]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="smoke sizes (a few prompts and records)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                        help="of generation and of the DP step's base weights (auto: synthesis.lm.loader.fast_dtype)")
    parser.add_argument("--only", nargs="+", choices=[name for name, _, _ in BENCHMARKS], default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the markdown here")
    parser.add_argument("--out-dir", type=Path, default=None, help="write the markdown to DIR/<machine>.md")
    args = parser.parse_args()

    import torch

    from benchmarks import roofline
    from synthesis.lm.loader import fast_dtype

    machine = roofline.machine_describe()
    dtype = str(fast_dtype()).removeprefix("torch.") if args.dtype == "auto" else args.dtype
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=False).stdout.strip()
    rows, commands, started = [], [], time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        for name, short, tiny in BENCHMARKS:
            if args.only and name not in args.only:
                continue
            arguments = [a.format(dtype=dtype) for a in (tiny if args.tiny else short)]
            if name == "dp_step":
                arguments += ["--dtype", dtype]
            summary = Path(scratch) / f"{name}.json"
            commands.append(f"benchmarks/{name}.py {' '.join(arguments)}")
            print(f"run_all: {commands[-1]}", file=sys.stderr, flush=True)
            subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *arguments,
                            "--roofline-json", str(summary)], cwd=ROOT, stdout=sys.stderr, check=True)
            rows += json.loads(summary.read_text())["rows"]
    load_end = os.getloadavg()[0]
    header = (f"`benchmarks/run_all.py{' --tiny' if args.tiny else ''}` at commit `{commit}`, torch {torch.__version__} "
              f"with {torch.get_num_threads()} threads, {time.perf_counter() - started:.0f} s in all; the benchmarks "
              f"ran as: " + "; ".join(f"`{command}`" for command in commands) + ".")
    text = markdown(machine, load_end, rows, header)
    sys.stdout.write(text)
    for path in filter(None, [args.out, args.out_dir and args.out_dir / f"{machine_slug(machine)}.md"]):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"run_all: wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
