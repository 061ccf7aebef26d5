"""The PII detector's cost where it runs, old detector against new in the same run (issue 24 asks
the filter stage and streamed serving to stay within 10% of the old detector's time):

- the filter stage's work (synthesis.filtering.filter_instructions: the PII scan, near-duplicate
  removal and the relevance judge, the embedded model asked yes or no) on a fixed set of
  instructions (the medical seed instructions and demo patient messages, some with names);
- streamed serving of answers through the output filter (synthesis.serving.output_filter's
  StreamFilter, fed each decoded piece as the serving view does). The answers are generated once
  by the embedded model, streamed, and their generation time recorded; each detector's filter
  then replays the same pieces, and its serving time is the generation time plus its filter's
  time (the view runs the filter in the same loop, after each piece).

"Old" is privacy/pii.py at OLD_DETECTOR_COMMIT (Faker's US name lists and rules, before Presidio),
read from git; "new" is privacy.pii as checked out. Each measurement is the median of --repeats,
old and new alternating; times are this process's CPU seconds (wall seconds beside them), which
other work on a shared machine stretches far less than wall time.

    nice .venv/bin/python benchmarks/pii_speed.py
    nice .venv/bin/python benchmarks/pii_speed.py --instructions 64 --answers 8 --max-new-tokens 96 --repeats 3
"""
import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ksg_web.settings")
OLD_DETECTOR_COMMIT = "ca79a2b"  # the last privacy/pii.py before the Presidio detector (5b814cb)
QUESTIONS = (
    "I have had a dull headache across my forehead for three days. What should I do?",
    "My knee is stiff in the morning and swells in the evening. Is this serious?",
    "Good morning doctor, Robert White here, 54 years old. I have a dry cough.",
    "It burns when I pee and I need to go all the time. Do I need to come in?",
    "Hello, my name is Ysolde Crumpton and my inhaler ran out. Can you write to me?",
    "The room spins when I turn over in bed. What is happening?",
    "I have itchy, dry red patches on my elbows and hands. What cream should I use?",
    "My blood pressure at the pharmacy was 160 over 100. Should I worry?",
)


def cpu_line() -> str:
    """lscpu's model name, family and model (the CPU the figures belong to)."""
    fields = {}
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"
    return f"{fields.get('Model name', '?')} (family {fields.get('CPU family', '?')}, model {fields.get('Model', '?')})"


def old_detector() -> types.ModuleType:
    """privacy/pii.py as it was at OLD_DETECTOR_COMMIT, as a module."""
    try:
        source = subprocess.run(["git", "show", f"{OLD_DETECTOR_COMMIT}:privacy/pii.py"], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        raise SystemExit(f"cannot read the old detector from git ({OLD_DETECTOR_COMMIT}): {error}") from error
    module = types.ModuleType("pii_before_presidio")
    exec(compile(source, f"{OLD_DETECTOR_COMMIT}:privacy/pii.py", "exec"), module.__dict__)  # noqa: S102 - our own history
    return module


def instructions_fixed(count: int) -> list[str]:
    """count distinct instructions: the medical seed instructions, QUESTIONS, then demo patient
    messages (with names, record numbers, dates) for the rest."""
    from privacy.demo_data import demo_records
    from synthesis.prompts import seed_instructions

    plain = list(dict.fromkeys([*seed_instructions("medical"), *QUESTIONS]))
    messages = [record["instruction"] for record in demo_records(domain="medical", n=count, seed=11)]
    return (plain + messages)[:count]


def timed(work) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) that work() took. CPU time is the figure to
    compare on a shared machine: other work's load stretches wall time, hardly CPU time."""
    cpu, wall = time.process_time(), time.perf_counter()
    work()
    return time.process_time() - cpu, time.perf_counter() - wall


def _median(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def filter_stage(detectors: dict, instructions: list[str], judge, repeats: int) -> dict:
    """{name: {"stage", "scan": (CPU s, wall s), "judged": n}}: the stage run with each detector's
    pii_find_many (and "none": a detector that finds nothing, so every well-formed, distinct
    instruction is judged: the rest of the stage's work, for a like-for-like ratio)."""
    from synthesis import filtering

    detectors = {**detectors, "none": lambda texts: [[] for _ in texts]}
    runs = {name: {"stage": [], "scan": [], "judged": 0} for name in detectors}
    for _ in range(repeats):
        for name, find_many in detectors.items():
            filtering.pii_find_many = find_many
            texts = [filtering.normalise_instruction(text) for text in instructions]
            runs[name]["scan"].append(timed(lambda: find_many(texts)))
            verdicts = []
            runs[name]["stage"].append(timed(lambda: verdicts.extend(filtering.filter_instructions(
                instructions, config=filtering.FilterConfig(), domain="medical", next_token_probs=judge.next_token_probs))))
            runs[name]["judged"] = sum(v.kept or v.reason == "not_relevant" for v in verdicts)
    return {name: {"stage": _median(run["stage"]), "scan": _median(run["scan"]), "judged": run["judged"]}
            for name, run in runs.items()}


def answers_streamed(backend, count: int, max_new_tokens: int) -> tuple[list[list[str]], tuple[float, float]]:
    """count answers streamed by the serving engine: their pieces and the (CPU, wall) seconds they
    took (CPU time of this process: the engine's threads are in it)."""
    from synthesis.lm.generation import Completion, SamplingParams
    from synthesis.serving.servers import serving_engine_create

    engine = serving_engine_create(backend)
    sampling = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens)
    answers = []

    def stream_all() -> None:
        for question in (QUESTIONS * count)[:count]:
            answers.append([piece for piece in engine.stream([{"role": "user", "content": question}], sampling)
                            if not isinstance(piece, Completion)])

    try:
        return answers, timed(stream_all)
    finally:
        engine.close()


def stream_filter_seconds(detectors: dict, answers: list[list[str]], repeats: int) -> dict:
    """{name: seconds} to pass every answer's pieces through the StreamFilter with its pii_find."""
    from synthesis.serving import output_filter

    def replay() -> None:
        for pieces in answers:
            gate = output_filter.StreamFilter(mode="mask")
            for piece in pieces:
                gate.feed(piece)
            gate.finish()

    results = {name: [] for name in detectors}
    for _ in range(repeats):
        for name, find in detectors.items():
            output_filter.pii_find = find
            results[name].append(timed(replay))
    return {name: _median(times) for name, times in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instructions", type=int, default=64, help="instructions through the filter stage")
    parser.add_argument("--answers", type=int, default=8, help="answers streamed through the output filter")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU time is not spent spinning)")
    args = parser.parse_args()

    import django

    django.setup()
    import torch
    from django.conf import settings

    from privacy import pii
    from synthesis.lm.generation import TransformersBackend
    from synthesis.lm.loader import EMBEDDED_MODEL, causal_lm_load

    torch.set_num_threads(args.threads)
    old = old_detector()
    def fresh(find):
        """find with the detector's memory of scanned texts emptied first: every repeat scans, as a
        stage does with texts it has not seen (pii.FOUND_CACHE_TEXTS would answer repeats from memory)."""
        def scan(texts):
            with pii._found_lock:
                pii._detector().found.clear()
            return find(texts)
        return scan

    finders = {"old": lambda texts: [old.pii_find(text) for text in texts], "new": fresh(pii.pii_find_many)}
    single = {"old": old.pii_find, "new": fresh(pii.pii_find)}
    for find in single.values():  # loads: the old lists, the new NER pipeline
        find("warm up, Ysolde Crumpton here")
    model, tokenizer = causal_lm_load(EMBEDDED_MODEL, cache_dir=settings.KSG_MODEL_CACHE)
    judge = TransformersBackend(model, tokenizer)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    print(f"commit {commit.strip()}, {cpu_line()}, {os.cpu_count()} CPUs, torch {torch.get_num_threads()} threads; "
          f"old detector {OLD_DETECTOR_COMMIT}, new: {pii.pii_detector_description()['text'][:80]}...; "
          f"median of {args.repeats}; load average {os.getloadavg()[0]:.2f} at start")

    instructions = instructions_fixed(args.instructions)
    filter_stage(finders, instructions[:8], judge, 1)  # warm-up
    stage = filter_stage(finders, instructions, judge, args.repeats)
    print(f"filter stage, {len(instructions)} instructions (judge: {EMBEDDED_MODEL}); CPU s (wall s):")
    for name, run in stage.items():
        print(f"  {name:>4}: stage {run['stage'][0]:7.2f} ({run['stage'][1]:6.2f}), {run['judged']} judged; "
              f"PII scan {run['scan'][0]:6.3f} ({run['scan'][1]:6.3f}), "
              f"{1000 * run['scan'][0] / len(instructions):.2f} ms CPU an instruction")
    rest = stage["none"]["stage"][0]
    print(f"  new / old, the stage as run: {stage['new']['stage'][0] / stage['old']['stage'][0]:.3f}; like for like "
          f"(each scan plus the rest of the stage judging every instruction, {rest:.2f} s): "
          f"{(rest + stage['new']['scan'][0]) / (rest + stage['old']['scan'][0]):.3f}; "
          f"PII scan alone {stage['new']['scan'][0] / stage['old']['scan'][0]:.1f}x")

    answers, (generation, generation_wall) = answers_streamed(judge, args.answers, args.max_new_tokens)
    filtering = stream_filter_seconds(single, answers, args.repeats)
    pieces = sum(len(a) for a in answers)
    print(f"streamed serving, {len(answers)} answers, {pieces} pieces, generation {generation:.2f} CPU s "
          f"({generation_wall:.2f} wall s):")
    for name, (seconds, wall) in filtering.items():
        print(f"  {name}: filter {seconds:6.3f} ({wall:6.3f}), {1000 * seconds / len(answers):.1f} ms CPU an answer; "
              f"serving {generation + seconds:7.2f}")
    print(f"  new / old: serving {(generation + filtering['new'][0]) / (generation + filtering['old'][0]):.3f}, "
          f"the filter alone {filtering['new'][0] / filtering['old'][0]:.1f}x")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
