"""Serving throughput and latency: `ksg_serve` on a run's model (daphne, the OpenAI-compatible
endpoint, the PII filter on), C concurrent clients each sending R chat completions of realistic
patient questions; per-request latency p50/p95 and aggregate completion tokens per second.

    KSG_DATA_DIR=data/results .venv/bin/python benchmarks/serving.py --run 2 --clients 1 8 32

The run must have succeeded and been evaluated (its model is what is served). The server runs as
its own process on a free port, with a rate limit high enough not to interfere.
"""
import argparse
import asyncio
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = (
    "I have had a dull headache across my forehead for three days. What should I do?",
    "My knee is stiff in the morning and swells in the evening. Is this serious?",
    "I cough all night and my chest rattles. Can I treat this at home?",
    "It burns when I pee and I need to go all the time. Do I need to come in?",
    "I feel exhausted all the time and get breathless on the stairs.",
    "The room spins when I turn over in bed. What is happening?",
    "I have itchy, dry red patches on my elbows and hands. What cream should I use?",
    "My blood pressure at the pharmacy was 160 over 100. Should I worry?",
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(run_id: int, port: int) -> tuple[subprocess.Popen, str, str]:
    process = subprocess.Popen(
        [sys.executable, "manage.py", "ksg_serve", "--run", str(run_id), "--port", str(port),
         "--requests-per-minute", "1000000", "--key-name", "benchmark"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    key = model = None
    for line in process.stdout:
        if match := re.search(r"\(shown once\): (ksk-\S+)", line):
            key = match.group(1)
        if match := re.search(r"endpoint: \S+\s+\(model='([^']+)'\)", line):
            model = match.group(1)
            break
    if key is None or model is None:
        process.kill()
        raise SystemExit(f"ksg_serve did not start: {process.stdout.read()}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return process, key, model
        time.sleep(0.2)
    process.kill()
    raise SystemExit("ksg_serve did not open its port")


async def clients_run(base_url: str, key: str, model: str, clients: int, requests: int, max_tokens: int):
    from openai import AsyncOpenAI

    api = AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=600)
    latencies, tokens = [], 0

    async def one_client(index: int) -> None:
        nonlocal tokens
        for request in range(requests):
            question = QUESTIONS[(index + request) % len(QUESTIONS)]
            started = time.perf_counter()
            answer = await api.chat.completions.create(model=model, max_tokens=max_tokens, temperature=0.7,
                                                       messages=[{"role": "user", "content": question}])
            latencies.append(time.perf_counter() - started)
            tokens += answer.usage.completion_tokens

    started = time.perf_counter()
    await asyncio.gather(*(one_client(i) for i in range(clients)))
    wall = time.perf_counter() - started
    await api.close()
    return latencies, tokens, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=int, required=True, help="a succeeded, evaluated run in KSG_DATA_DIR's database")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=4, help="requests per client")
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()

    port = free_port()
    server, key, model = start_server(args.run, port)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        asyncio.run(clients_run(base_url, key, model, 1, 1, 4))  # warm-up
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
        print(f"# serving benchmark: run {args.run} ({model}), commit {commit}, {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} CPUs, {args.requests} requests per client, max_tokens {args.max_tokens}")
        print("| clients | requests | completion tokens | seconds | tokens/s | p50 latency s | p95 latency s |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for clients in args.clients:
            latencies, tokens, wall = asyncio.run(clients_run(base_url, key, model, clients, args.requests,
                                                              args.max_tokens))
            latencies.sort()
            p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
            print(f"| {clients} | {len(latencies)} | {tokens} | {wall:.1f} | {tokens / wall:.1f} | "
                  f"{statistics.median(latencies):.2f} | {p95:.2f} |", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
