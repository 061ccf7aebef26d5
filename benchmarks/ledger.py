"""Concurrent reserve / commit / release on PostgreSQL from many processes: throughput, and proof
that the budget is never overspent.

A throwaway database is created on the server of --database-url (and dropped afterwards), one
dataset with an epsilon limit is registered in it, and P worker processes each run jobs in a
loop: reserve a random epsilon, commit a random part of it, release the rest, as DP jobs do.
Many reservations are refused because the limit is reached; the check at the end is that the
ledger's committed sum never passes the limit, no reservation is left open, and every job's
rows are reserve -> commit -> release or a refusal with no row at all.

With --composition tight the dataset composes its DP history (issue 25): each job plans one of
three DP-SGD mechanisms (sample rate, noise, steps) and reserves with the plan; the budget
composes it with everything committed and reserved under the row lock (Opacus' PRV accountant);
the job commits the mechanism of a random part of its steps. The check is then that the composed
figure of the commits never passes the limit (the sum of the jobs' own epsilons may: that is what
tight composition saves).

    .venv/bin/python benchmarks/ledger.py --database-url postgres://postgres@127.0.0.1:5432/test
    .venv/bin/python benchmarks/ledger.py --processes 2 8 16 --jobs 200
    .venv/bin/python benchmarks/ledger.py --composition tight --processes 4 --jobs 30 --limit 8
"""
import argparse
import multiprocessing
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ksg_web.settings")


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _admin_sql(url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(statement)


# (sample rate, noise multiplier, planned steps) of the jobs the tight mode plans: three shapes, so
# the merged history stays three entries and the PRV composition's cost stays bounded
PLANS = ((0.02, 1.0, 400), (0.01, 0.8, 600), (0.05, 1.5, 200))


def _setup(url: str, limit: str, composition: str) -> int:
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, check=True,
                   env={**os.environ, "DATABASE_URL": url})
    os.environ["DATABASE_URL"] = url
    import django

    django.setup()
    from privacy.services import user_create
    from tests.privacy.factories import make_dataset

    from privacy.models import PrivacyBudget

    owner = user_create(username="bench", role="data_scientist", password="bench-password-1")
    dataset = make_dataset(owner, name="bench", epsilon_limit=limit)
    PrivacyBudget.objects.filter(dataset=dataset).update(composition=composition)
    return dataset.pk


def _worker(url: str, dataset_id: int, jobs: int, seed: int, results, composition: str = "sequential") -> None:
    os.environ["DATABASE_URL"] = url
    import django

    django.setup()
    from jobs.models import Job
    from privacy.models import PrivateDataset
    from privacy.services import BudgetExceeded, budget_commit, budget_release, budget_reserve

    from privacy.dp.accountant import epsilon_compute
    from privacy.dp.composition import Mechanism

    rng = random.Random(seed)
    dataset = PrivateDataset.objects.get(pk=dataset_id)
    owner, delta = dataset.owner, dataset.budget.delta
    done = refused = 0
    started = time.perf_counter()
    for _ in range(jobs):
        job = Job.objects.create(kind="dp_finetune", owner=owner, dataset=dataset, params={}, celery_task_id="bench")
        plan = actual = None
        if composition == "tight":
            plan = Mechanism(*rng.choice(PLANS))
            actual = Mechanism(plan.sample_rate, plan.noise_multiplier, rng.randint(plan.steps // 2, plan.steps))
            target = epsilon_compute(sample_rate=plan.sample_rate, noise_multiplier=plan.noise_multiplier,
                                     steps=plan.steps, delta=delta)
        else:
            target = round(rng.uniform(0.05, 0.5), 6)
        try:
            budget_reserve(job=job, epsilon=target, actor=owner, plan=plan)
        except BudgetExceeded:
            refused += 1
            continue
        if actual is None:
            budget_commit(job=job, epsilon=round(target * rng.uniform(0.5, 1.0), 6), delta=delta, mechanism={},
                          actor=owner)
        else:
            spent = epsilon_compute(sample_rate=actual.sample_rate, noise_multiplier=actual.noise_multiplier,
                                    steps=actual.steps, delta=delta)
            budget_commit(job=job, epsilon=spent, delta=delta, mechanism=actual.as_record(), actor=owner)
        budget_release(job=job, actor=owner)
        done += 1
    results.put((done, refused, time.perf_counter() - started))


def _check(dataset_id: int) -> dict:
    from django.db.models import Count, Sum

    from privacy.models import LedgerEntry, PrivateDataset
    from privacy.selectors import dataset_balance

    dataset = PrivateDataset.objects.get(pk=dataset_id)
    balance = dataset_balance(dataset=dataset)
    committed = LedgerEntry.objects.filter(budget__dataset=dataset, kind="commit").aggregate(total=Sum("epsilon"))["total"]
    shapes = (LedgerEntry.objects.filter(budget__dataset=dataset).values("job").annotate(rows=Count("id"))
              .values_list("rows", flat=True))
    independent = None
    if dataset.budget.composition == "tight":  # the commits' mechanisms through Google dp-accounting too
        from privacy.dp.composition import Mechanism, epsilon_independent

        mechanisms = [Mechanism.from_record(m) for m in LedgerEntry.objects.filter(
            budget__dataset=dataset, kind="commit").values_list("mechanism", flat=True)]
        independent = round(epsilon_independent(mechanisms=mechanisms, delta=dataset.budget.delta), 6)
    # "charged": what the policy charges (the sum, or the composed figure under tight)
    return {"limit": dataset.budget.epsilon_limit, "charged": balance.spent, "committed": committed or 0,
            "independent": independent,
            "reserved": balance.reserved, "jobs_with_rows": len(shapes), "bad_shapes": sum(1 for n in shapes if n != 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--jobs", type=int, default=100, help="jobs per process")
    parser.add_argument("--limit", default="50", help="the dataset's epsilon limit")
    parser.add_argument("--composition", default="sequential", choices=("sequential", "tight"),
                        help="the dataset's composition policy (tight: jobs plan DP-SGD mechanisms, PRV composes them)")
    args = parser.parse_args()
    if not args.database_url.startswith("postgres"):
        sys.exit("this benchmark measures PostgreSQL's row locks: give a postgres:// --database-url")

    print(f"commit {subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"{args.jobs} jobs per process, limit {args.limit}, composition {args.composition}: "
          + ("epsilon 0.05-0.5 reserved per job" if args.composition == "sequential" else
             f"each job plans one of (q, sigma, steps) {PLANS} and commits 1/2 to all of its steps"))
    print("| processes | jobs | settled | refused | seconds | ledger ops/s | sum of commits | charged | dp-accounting | limit | open reservations | jobs with a bad row sequence |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for processes in args.processes:
        name = f"ksg_bench_ledger_{os.getpid()}_{processes}"
        _admin_sql(args.database_url, f'CREATE DATABASE "{name}"')
        try:
            url = _with_database(args.database_url, name)
            setup = multiprocessing.get_context("spawn").Pool(1)
            dataset_id = setup.apply(_setup, (url, args.limit, args.composition))
            setup.close()
            setup.join()
            context = multiprocessing.get_context("spawn")
            results = context.Queue()
            workers = [context.Process(target=_worker,
                                       args=(url, dataset_id, args.jobs, seed, results, args.composition))
                       for seed in range(processes)]
            for worker in workers:
                worker.start()
            outcomes = [results.get() for _ in workers]
            for worker in workers:
                worker.join()
            # the slowest worker's own loop (process start and django.setup left out)
            seconds = max(o[2] for o in outcomes)
            checker = context.Pool(1)
            os.environ["DATABASE_URL"] = url
            report = checker.apply(_check_in_process, (url, dataset_id))
            checker.close()
            checker.join()
            settled = sum(o[0] for o in outcomes)
            refused = sum(o[1] for o in outcomes)
            ops = 3 * settled + refused  # each settled job writes 3 rows; a refusal is one locked read
            print(f"| {processes} | {processes * args.jobs} | {settled} | {refused} | {seconds:.1f} | {ops / seconds:.1f} "
                  f"| {report['committed']} | {report['charged']} | {report['independent'] or '—'} | {report['limit']} "
                  f"| {report['reserved']} "
                  f"| {report['bad_shapes']} |", flush=True)
            assert report["charged"] <= report["limit"], "OVERSPENT"
            assert report["independent"] is None or report["independent"] <= report["limit"], "OVERSPENT (dp-accounting)"
            if args.composition == "sequential":
                assert report["committed"] == report["charged"]
            assert report["reserved"] == 0 and report["bad_shapes"] == 0
        finally:
            _admin_sql(args.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _check_in_process(url: str, dataset_id: int) -> dict:
    os.environ["DATABASE_URL"] = url
    import django

    django.setup()
    return _check(dataset_id)


if __name__ == "__main__":
    main()
