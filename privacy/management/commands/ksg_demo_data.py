"""Write a synthetic "private" dataset (JSON Lines) for demos and tests."""
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from privacy.datasets import dataset_write_jsonl
from privacy.demo_data import DEMO_DOMAINS, demo_records_planted
from privacy.pii import pii_recall


class Command(BaseCommand):
    help = (
        "Write N synthetic records full of personal details (names, phones, dates, ids) as JSON Lines "
        "{instruction, response}; the same seed gives the same bytes."
    )

    def add_arguments(self, parser):
        parser.add_argument("--domain", required=True, help=f"one of: {', '.join(DEMO_DOMAINS)}")
        parser.add_argument("--n", type=int, required=True, help="number of records, at least 1")
        parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        parser.add_argument("--out", type=Path, required=True, help="the .jsonl file to write")
        parser.add_argument("--pii-recall", action="store_true",
                            help="also print the PII detector's recall on these records, per kind, against the "
                                 "details the generator planted (what the scrubbed baseline can mask)")

    def handle(self, *args, domain: str, n: int, seed: int, out, **options):
        out = Path(out)  # call_command(out="...") skips the parser's type
        if domain not in DEMO_DOMAINS:
            raise CommandError(f"unknown domain {domain!r}; choose one of {', '.join(DEMO_DOMAINS)}")
        if n < 1:
            raise CommandError(f"--n must be at least 1, not {n}")
        if out.is_dir():
            raise CommandError(f"cannot write {out}: it is a directory; give a file name")
        if not out.parent.exists():
            raise CommandError(f"cannot write {out}: the directory {out.parent} does not exist")
        if not out.parent.is_dir():
            raise CommandError(f"cannot write {out}: {out.parent} is not a directory")
        planted = demo_records_planted(domain=domain, n=n, seed=seed)
        records = [record for record, _ in planted]
        try:
            dataset_write_jsonl(out, records)
        except OSError as error:
            raise CommandError(f"cannot write {out}: {error.strerror or error}") from error
        self.stdout.write(f"wrote {len(records)} {domain} records to {out} (seed {seed})")
        if options.get("pii_recall"):
            recall = pii_recall((record["instruction"] + "\n" + record["response"], truth) for record, truth in planted)
            self.stdout.write("PII detector recall against the planted details:")
            for kind, row in recall.items():
                if row["planted"]:
                    self.stdout.write(f"  {kind:<6} {row['found']:>6} of {row['planted']:<6} {row['recall']:.4f}")
