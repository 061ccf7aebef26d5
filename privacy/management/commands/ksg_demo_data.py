"""Write a synthetic "private" dataset (JSON Lines) for demos and tests."""
import re
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from privacy.datasets import DatasetError, dataset_parse, dataset_write_jsonl
from privacy.demo_data import DEMO_DOMAINS, demo_records_planted
from privacy.demo_people import DUPLICATE_RATE, NAME_FIELDS, RECORDS_PER_PERSON, UNIT_FIELDS, demo_people_planted
from privacy.pii import pii_detector_description
from privacy.pii_measure import pii_measure, pii_measure_lines
from privacy.pii_train import detector_trained_name_words


def _records_per_person(text: str) -> tuple[int, int]:
    """"2-8" -> (2, 8); "5" -> (5, 5)."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", str(text))
    if not match:
        raise CommandError(f"--records-per-person must be a number or a range like 2-8, not {text!r}")
    fewest = int(match.group(1))
    return fewest, int(match.group(2) or fewest)


class Command(BaseCommand):
    help = (
        "Write synthetic records full of personal details (names, phones, dates, ids) as JSON Lines "
        "{instruction, response}; the same seed gives the same bytes. --n N: N records, one person each. "
        f"--people N: N persons with several records each ({RECORDS_PER_PERSON[0]}-{RECORDS_PER_PERSON[1]} by "
        "default), each record carrying the person's id and full name as fields (patient_id and patient_name for "
        "medical, customer_id and customer_name for finance; register with --privacy-unit patient_id "
        "--identifying-field patient_name) and, in its text, their stable age, record or account number and "
        "growing history; now and "
        f"then a person sends the same message twice (an exact duplicate, {DUPLICATE_RATE:.0%} by default)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--domain", required=True, help=f"one of: {', '.join(DEMO_DOMAINS)}")
        size = parser.add_mutually_exclusive_group(required=True)
        size.add_argument("--n", type=int, help="number of records, one person each, at least 1")
        size.add_argument("--people", type=int,
                          help="number of persons (patients or customers), each with several records, at least 1")
        parser.add_argument("--records-per-person", metavar="FEWEST-MOST",
                            help=f"with --people: how many records a person has, drawn uniformly from the range "
                                 f"(default {RECORDS_PER_PERSON[0]}-{RECORDS_PER_PERSON[1]}; one number for exactly "
                                 "that many)")
        parser.add_argument("--duplicate-rate", type=float,
                            help=f"with --people: the chance that a record after a person's first repeats the one "
                                 f"before it exactly (default {DUPLICATE_RATE}; 0 for none)")
        parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        parser.add_argument("--out", type=Path, required=True, help="the .jsonl file to write")
        parser.add_argument("--pii-recall", action="store_true",
                            help="also print the PII detector's recall and precision on these records, per kind "
                                 "with 95%% Wilson intervals, against the details the generator planted (what the "
                                 "scrubbed baseline can mask)")

    def handle(self, *args, domain: str, seed: int, out, **options):
        out = Path(out)  # call_command(out="...") skips the parser's type
        if domain not in DEMO_DOMAINS:
            raise CommandError(f"unknown domain {domain!r}; choose one of {', '.join(DEMO_DOMAINS)}")
        planted = self._generate(domain, seed, options)
        if out.is_dir():
            raise CommandError(f"cannot write {out}: it is a directory; give a file name")
        if not out.parent.exists():
            raise CommandError(f"cannot write {out}: the directory {out.parent} does not exist")
        if not out.parent.is_dir():
            raise CommandError(f"cannot write {out}: {out.parent} is not a directory")
        records = [record for record, _ in planted]
        try:
            dataset_write_jsonl(out, records)
        except OSError as error:
            raise CommandError(f"cannot write {out}: {error.strerror or error}") from error
        if options.get("people") is None:
            self.stdout.write(f"wrote {len(records)} {domain} records to {out} (seed {seed})")
        else:
            self._report_people(out, records, domain, seed)
        if options.get("pii_recall"):
            measured = pii_measure(((record["instruction"] + "\n" + record["response"], truth) for record, truth in planted),
                                   seen=detector_trained_name_words())
            self.stdout.write(f"PII detector: {pii_detector_description()['text']}")
            self.stdout.write("its recall and precision against the details the generator planted:")
            for line in pii_measure_lines(measured):
                self.stdout.write(line)

    def _generate(self, domain: str, seed: int, options: dict) -> list:
        n, people = options.get("n"), options.get("people")
        spread, duplicate_rate = options.get("records_per_person"), options.get("duplicate_rate")
        if people is None:
            if spread is not None or duplicate_rate is not None:
                raise CommandError("--records-per-person and --duplicate-rate go with --people, not --n")
            if n < 1:
                raise CommandError(f"--n must be at least 1, not {n}")
            return demo_records_planted(domain=domain, n=n, seed=seed)
        if people < 1:
            raise CommandError(f"--people must be at least 1, not {people}")
        try:
            return demo_people_planted(
                domain=domain, people=people, seed=seed,
                records_per_person=RECORDS_PER_PERSON if spread is None else _records_per_person(spread),
                duplicate_rate=DUPLICATE_RATE if duplicate_rate is None else duplicate_rate,
            )
        except ValueError as error:
            raise CommandError(str(error)) from error

    def _report_people(self, out: Path, records: list[dict], domain: str, seed: int) -> None:
        unit_field, name_field = UNIT_FIELDS[domain], NAME_FIELDS[domain]
        persons = len({record[unit_field] for record in records})
        duplicates = sum(a == b for a, b in zip(records, records[1:]))
        self.stdout.write(f"wrote {len(records)} {domain} records of {persons} persons ({unit_field}) to {out} "
                          f"(seed {seed}; {duplicates} exact duplicates)")
        # Check the file the way the upload reads it, with its privacy unit and identifying field.
        try:
            parsed = dataset_parse(out, max_file_bytes=settings.KSG_MAX_DATASET_BYTES,
                                   max_record_chars=settings.KSG_MAX_RECORD_CHARS, privacy_unit=unit_field,
                                   identifying_fields=[name_field])
        except DatasetError as error:
            self.stdout.write(f"the dataset upload would refuse this file: {error.errors[0]} (the first of "
                              f"{len(error.errors)} problems listed)")
        else:
            self.stdout.write(f"the dataset upload accepts this file: {len(parsed.records)} records of "
                              f"{parsed.unit_count} persons, {len(parsed.duplicates)} exact duplicate(s) (kept unless "
                              f"--drop-duplicates); register it per person with: manage.py ksg_dataset_add {out} "
                              f"--name NAME --epsilon-limit EPS --privacy-unit {unit_field} "
                              f"--identifying-field {name_field} --audit-canaries 128")
