"""Model calls of the demo evaluation's sequentially sampled parts, fixed sizes against looks (issue 26).

Counts, not seconds (the CPU is shared): how many whole-record scorings the name reconstruction
makes (targets x candidates, plus one short greedy generation per target), how many records
membership inference scores, and how many greedy answers (target and base) and judge prompts
(both answer orders) the judge needs. The sizes are the demo preset's caps (30 targets against 30
candidates, 60 members + 60 non-members, 64 questions) and the schedule is evaluation.sequential's
(3 looks: a quarter, a half, all), decided by the same rules the attacks use. Each attack's
outcome is simulated at the rates measured on the demo data (docs/RESULTS.md, "Issues 22 and 23
on one dataset"): nonprivate reconstruction top-1 0.200 and membership AUC 0.763, KnowledgeSG
1/30 and 0.512, and for every model a judge that answers "A" to everything (consistency 0).
tests/evaluation/test_reconstruction.py, test_membership.py and test_stage.py check that the
attacks score exactly the items of the looks they make, so calls follow from the sizes.

    .venv/bin/python benchmarks/sample_sizes.py [--runs 500]
"""
import argparse
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scipy.stats import norm

from evaluation.membership import look_split, roc_auc
from evaluation.reconstruction import POWER_MULTIPLE
from evaluation.sequential import (
    auc_decision,
    consistency_decision,
    look_sizes,
    rate_decision,
    sample_until_decided,
)
from evaluation.utility import JUDGE_MIN_CONSISTENCY

TARGETS, CANDIDATES, MEMBERS, NONMEMBERS, QUESTIONS, LOOKS = 30, 30, 60, 60, 64, 3
MODELS = {"nonprivate": {"top1": 0.200, "auc": 0.763, "consistency": 0.0},
          "KnowledgeSG": {"top1": 1 / 30, "auc": 0.512, "consistency": 0.0}}


def reconstruction_targets_used(top1: float, rng: random.Random) -> tuple[int, str]:
    hits = [rng.random() < top1 for _ in range(TARGETS)]
    _, sample = sample_until_decided(
        look_sizes(TARGETS, LOOKS), lambda n, confidence: (sum(hits[:n]), n),
        lambda figure, confidence: rate_decision(*figure, chance=1 / CANDIDATES, multiple=POWER_MULTIPLE,
                                                 confidence=confidence), unit="targets")
    return sample["n"], sample["decision"]


def membership_records_used(auc: float, rng: random.Random) -> tuple[int, str]:
    shift = 2 ** 0.5 * norm.ppf(auc)  # two unit normals this far apart have this AUC
    members = [rng.gauss(shift, 1) for _ in range(MEMBERS)]
    nonmembers = [rng.gauss(0, 1) for _ in range(NONMEMBERS)]

    def measure(records, confidence):
        m, n = look_split(records, MEMBERS, NONMEMBERS)
        return roc_auc(members[:m], nonmembers[:n]), m, n

    _, sample = sample_until_decided(look_sizes(MEMBERS + NONMEMBERS, LOOKS), measure,
                                     lambda figure, confidence: auc_decision(*figure, confidence=confidence),
                                     unit="records")
    return sample["n"], sample["decision"]


def questions_used(consistency: float, rng: random.Random) -> tuple[int, str]:
    consistent = [rng.random() < consistency for _ in range(QUESTIONS)]
    _, sample = sample_until_decided(
        look_sizes(QUESTIONS, LOOKS), lambda n, confidence: (sum(consistent[:n]), n),
        lambda figure, confidence: consistency_decision(*figure, threshold=JUDGE_MIN_CONSISTENCY,
                                                        confidence=confidence), unit="questions")
    return sample["n"], sample["decision"]


def calls(targets: float, records: float, questions: float) -> dict[str, float]:
    return {"reconstruction scorings": targets * CANDIDATES, "reconstruction generations": targets,
            "membership scorings": records, "greedy answers": 2 * QUESTIONS,  # every question: ROUGE-L scores them all
            "judge prompts": 2 * questions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=500, help="simulated evaluations per model")
    args = parser.parse_args()
    fixed = calls(TARGETS, MEMBERS + NONMEMBERS, QUESTIONS)
    print(f"demo caps: {TARGETS} targets x {CANDIDATES} candidates, {MEMBERS}+{NONMEMBERS} membership records, "
          f"{QUESTIONS} questions; {LOOKS} looks at sizes {look_sizes(TARGETS, LOOKS)}, "
          f"{look_sizes(MEMBERS + NONMEMBERS, LOOKS)}, {look_sizes(QUESTIONS, LOOKS)}; {args.runs} simulated runs each")
    print("| model | what | fixed sizes | looks: mean | looks: range | stop decisions |")
    print("|---|---|---:|---:|---:|---|")
    for model, rates in MODELS.items():
        rng = random.Random(0)
        used = {"targets": [], "records": [], "questions": []}
        decisions = {"targets": [], "records": [], "questions": []}
        for _ in range(args.runs):
            for key, sampled, rate in (("targets", reconstruction_targets_used, rates["top1"]),
                                       ("records", membership_records_used, rates["auc"]),
                                       ("questions", questions_used, rates["consistency"])):
                n, decision = sampled(rate, rng)
                used[key].append(n)
                decisions[key].append(decision)
        per_run = [calls(t, r, q) for t, r, q in zip(used["targets"], used["records"], used["questions"])]
        source = {"reconstruction scorings": "targets", "reconstruction generations": "targets",
                  "membership scorings": "records", "greedy answers": "questions", "judge prompts": "questions"}
        for what, before in fixed.items():
            values = [row[what] for row in per_run]
            found = decisions[source[what]]
            counted = ", ".join(f"{d} {found.count(d) / len(found):.0%}" for d in sorted(set(found)))
            print(f"| {model} | {what} | {before:.0f} | {statistics.fmean(values):.0f} | "
                  f"{min(values):.0f}-{max(values):.0f} | {counted} |")
        total_before = sum(fixed.values())
        total_after = statistics.fmean(sum(row.values()) for row in per_run)
        print(f"| {model} | **all of the above** | {total_before:.0f} | {total_after:.0f} "
              f"({total_after / total_before:.0%}) | | |")


if __name__ == "__main__":
    main()
