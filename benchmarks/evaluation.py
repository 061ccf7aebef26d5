"""Seconds of the evaluation's privacy attacks on the embedded model: old vs new scoring, fp32 vs bf16.

The attacks' scoring on demo medical records: the likelihood name reconstruction (targets x
candidate names), membership inference (members = the first records, non-members the next as
many, at the stage's max_length) and one canary's exposure (reference secrets). "old" is the
scorer before the fast path (every text whole, padded batches in input order, log_softmax over
the full vocabulary at every position); "new" is evaluation.scoring as it is. The model is loaded
as the stage loads it (TransformersBackend.load, the adapter merged when given), in each dtype.
Each row's scores are compared with the first row's: the largest difference of a record
log-prob (nats), of a membership score, and how many targets' true-name rank changed.

    .venv/bin/python benchmarks/evaluation.py                             # new path, fp32 and bf16
    .venv/bin/python benchmarks/evaluation.py --paths old new --dtypes float32
    .venv/bin/python benchmarks/evaluation.py --adapter /path/to/lora    # a trained target

Each row also gets its roofline (benchmarks/roofline.py): the FLOPs and bytes of the three
attacks' scoring (benchmarks/workloads.scoring_workload, from the texts each scoring call
received, recorded as it ran) against the matrix-product rates measured here at its shapes in
the row's dtype and the memory bandwidth, printed beside the baseline's (the "old" scorer of
the same dtype where it ran, else the first row).
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


def old_scored_logprobs(model, examples, pad_id, batch_size):
    """evaluation.scoring._scored_logprobs before the fast path, for the "old" rows."""
    import torch

    from privacy.dp.train import IGNORE_INDEX, collate

    model.eval()
    pad, result = collate(pad_id), []
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            input_ids, attention, labels = pad(examples[start:start + batch_size])
            logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1].float()
            logprobs = torch.log_softmax(logits, dim=-1).gather(2, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
            counted = labels[:, 1:] != IGNORE_INDEX
            result += [row[mask].tolist() for row, mask in zip(logprobs, counted)]
    return result


def attacks_run(model, tokenizer, workload: dict, *, max_length: int) -> dict:
    """Seconds and scores of the three attacks."""
    from evaluation.canary import exposure
    from evaluation.membership import loss_scores, min_k_scores, roc_auc
    from evaluation.reconstruction import candidate_logprobs
    from evaluation.scoring import token_logprobs

    started = time.perf_counter()
    names = workload["candidates"]
    candidate_scores = [candidate_logprobs(model, tokenizer, target, names) for target in workload["targets"]]
    reconstruction_seconds = time.perf_counter() - started
    started = time.perf_counter()
    members = token_logprobs(model, tokenizer, workload["members"], max_length=max_length)
    nonmembers = token_logprobs(model, tokenizer, workload["nonmembers"], max_length=max_length)
    membership_seconds = time.perf_counter() - started
    started = time.perf_counter()
    canary = exposure(model, tokenizer, workload["canary"], reference_sample=workload["references"])
    canary_seconds = time.perf_counter() - started
    truth_ranks = [sum(score > scores[names.index(target["truth"])] for score in scores)
                   for target, scores in zip(workload["targets"], candidate_scores)]
    return {
        "seconds": (reconstruction_seconds, membership_seconds, canary_seconds),
        "candidate_scores": candidate_scores, "truth_ranks": truth_ranks,
        "membership_scores": loss_scores(members) + loss_scores(nonmembers),
        "loss_auc": roc_auc(loss_scores(members), loss_scores(nonmembers)),
        "min_k_auc": roc_auc(min_k_scores(members), min_k_scores(nonmembers)),
        "canary": canary,
    }


def workload_make(args) -> dict:
    from privacy.canary import canary_records
    from evaluation.reconstruction import candidate_names, reconstruction_targets
    from privacy.demo_data import demo_records

    records = demo_records(domain="medical", n=2 * args.members, seed=0)
    members, nonmembers = records[:args.members], records[args.members:]
    targets = reconstruction_targets(members, limit=args.targets)
    candidates = candidate_names(members, extra=[t["truth"] for t in targets], size=args.candidates, seed=0)
    return {"members": members, "nonmembers": nonmembers, "targets": targets, "candidates": candidates,
            "canary": canary_records(1, seed=0)[0], "references": args.references}


def differences(row: dict, reference: dict) -> str:
    """Largest |difference| of a record log-prob and of a membership score (nats) from the
    reference row, and the number of targets whose true name moved in the ranking."""
    record = max(abs(a - b) for mine, theirs in zip(row["candidate_scores"], reference["candidate_scores"])
                 for a, b in zip(mine, theirs))
    membership = max(abs(a - b) for a, b in zip(row["membership_scores"], reference["membership_scores"]))
    moved = sum(a != b for a, b in zip(row["truth_ranks"], reference["truth_ranks"]))
    return f"{record:.4f} | {membership:.4f} | {moved}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paths", nargs="+", default=["new"], choices=["old", "new"])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    parser.add_argument("--targets", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--members", type=int, default=50, help="members; as many non-members")
    parser.add_argument("--references", type=int, default=1000, help="reference secrets of the canary")
    parser.add_argument("--max-length", type=int, default=128, help="membership tokens per record (the stage's)")
    parser.add_argument("--adapter", type=Path, default=None, help="a LoRA adapter directory, merged as the stage does")
    parser.add_argument("--roofline-json", type=Path, default=None, help="also write the roofline rows here (run_all.py)")
    args = parser.parse_args()

    import django

    django.setup()
    import torch
    from django.conf import settings

    from benchmarks import roofline
    from evaluation import scoring
    from synthesis.lm.generation import TransformersBackend
    from synthesis.lm.loader import EMBEDDED_MODEL

    new_scored_logprobs = scoring._scored_logprobs
    workload = workload_make(args)
    machine = roofline.machine_describe()
    print(f"machine: {machine.line()}")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=False).stdout.strip()
    print(f"commit {commit} (+ working tree), {platform.machine()}, {os.cpu_count()} CPUs, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, load average "
          f"{os.getloadavg()[0]:.1f}; {len(workload['targets'])} targets x {len(workload['candidates'])} candidates, "
          f"{args.members}+{args.members} membership records (max_length {args.max_length}), 1 canary x "
          f"{args.references} references, adapter {args.adapter or 'none'}")
    print("| path | dtype | reconstruction s | membership s | canary s | total s | vs first row "
          "| truth top-1 / top-5 | loss AUC | min-k AUC | canary rank | max abs diff record log-prob "
          "| max abs diff membership score | truth ranks moved | load average |")
    print("|" + "---|" * 15)
    rows, totals, measured = [], [], []  # measured: (path, dtype, seconds, scoring calls, model config)
    for dtype in args.dtypes:
        backend = TransformersBackend.load(model_spec=EMBEDDED_MODEL, adapter_path=args.adapter,
                                           cache_dir=settings.KSG_MODEL_CACHE, dtype=getattr(torch, dtype))
        for path in args.paths:
            calls = []
            scoring._scored_logprobs = scoring_recorded(old_scored_logprobs if path == "old" else new_scored_logprobs,
                                                        calls)
            row = attacks_run(backend.model, backend.tokenizer, workload, max_length=args.max_length)
            rows.append(row)
            total = sum(row["seconds"])
            totals.append(total)
            measured.append((path, dtype, total, calls, backend.model.config))
            top1 = sum(rank == 0 for rank in row["truth_ranks"])
            top5 = sum(rank < 5 for rank in row["truth_ranks"])
            print(f"| {path} | {dtype} | {row['seconds'][0]:.1f} | {row['seconds'][1]:.1f} | {row['seconds'][2]:.1f} "
                  f"| {total:.1f} | {totals[0] / total:.1f}x | {top1} / {top5} of {len(row['truth_ranks'])} "
                  f"| {row['loss_auc']:.3f} | {row['min_k_auc']:.3f} | {row['canary']['rank_in_sample']} "
                  f"| {differences(row, rows[0])} | {os.getloadavg()[0]:.1f} |", flush=True)
        backend.close()
    scoring._scored_logprobs = new_scored_logprobs
    table_rows = roofline_report(measured, args)
    if args.roofline_json:
        roofline.summary_write(args.roofline_json, table_rows)
    print(f"machine: {machine.line(os.getloadavg()[0])}", flush=True)


def scoring_recorded(scored_logprobs, calls: list):
    """scored_logprobs that also keeps each call's examples (a reference: no copy, no time)."""
    def recorded(model, examples, pad_id, batch_size):
        calls.append(examples)
        return scored_logprobs(model, examples, pad_id, batch_size)

    return recorded


def roofline_report(measured: list, args) -> list[dict]:
    """Print each row's roofline line (rates measured now at its shapes in its dtype) and return
    the table rows: each row against its baseline (the "old" scorer of its dtype, else the first row)."""
    import torch

    from benchmarks import roofline
    from benchmarks.workloads import scoring_workload
    from evaluation.scoring import MAX_BATCH_TOKENS

    bandwidth, rates_cache, ceilings = roofline.memory_bandwidth(), {}, []
    for path, dtype_name, seconds, calls, config in measured:
        workload = scoring_workload(roofline.ModelShape.from_config(config), calls=calls,
                                    element_bytes=getattr(torch, dtype_name).itemsize, tokens_per_pass=MAX_BATCH_TOKENS)
        ceilings.append(roofline.ceiling_measure(workload, getattr(torch, dtype_name), bandwidth=bandwidth,
                                                 rates_cache=rates_cache))
        print(f"{ceilings[-1].line(f'{path} {dtype_name}', seconds)}; {workload.notes}")
    for dtype_name in dict.fromkeys(dtype for _, dtype, _, _, _ in measured):
        print(roofline.rates_line({shape: rate for (shape, dtype), rate in rates_cache.items()
                                   if dtype == getattr(torch, dtype_name)}, dtype_name))
    rows = []
    for index, (path, dtype_name, seconds, _, _) in enumerate(measured):
        base = next((i for i, (p, d, _, _, _) in enumerate(measured) if p == "old" and d == dtype_name), 0)
        if index == base:
            continue
        rows.append(roofline.summary_row(
            benchmark="evaluation", workload=f"attacks' scoring: {args.targets} targets x {args.candidates} candidates, "
                                         f"{args.members}+{args.members} records, 1 canary x {args.references} references",
            dtype=dtype_name, measured_label=f"{path} scorer", measured_seconds=seconds,
            baseline_label=f"{measured[base][0]} scorer {measured[base][1]}", baseline_seconds=measured[base][2],
            ceiling=ceilings[index], baseline_ceiling=ceilings[base]))
    return rows


if __name__ == "__main__":
    main()
