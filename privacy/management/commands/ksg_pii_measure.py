"""Measure the PII detector on a file of messages with their true personal details marked."""
import json
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from privacy.pii import KINDS, pii_detector_description
from privacy.pii_measure import pii_measure, pii_measure_lines
from privacy.pii_train import detector_trained_name_words, record_measurement


class Command(BaseCommand):
    help = (
        "Print the PII detector's recall and precision per kind, with 95% Wilson intervals, on a JSON Lines file "
        "of {\"text\": ..., \"pii\": {kind: [values]}} (every whole-word occurrence of a value is a true span; "
        f"kinds: {', '.join(KINDS)}). The hand-written set: tests/privacy/pii_sets/pii_handwritten.jsonl."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, help="the .jsonl file of marked messages")
        parser.add_argument("--record", action="store_true",
                            help="write the name figures into the fine-tuned NER's meta.json, where the detector's "
                                 "description (dataset and serving pages, run reports) gives them; only for a set "
                                 "the NER was not trained on")

    def handle(self, *args, path, **options):
        path = Path(path)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise CommandError(f"cannot read {path}: {error.strerror or error}") from error
        items = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                text, truth = row["text"], row.get("pii") or {}
            except (ValueError, KeyError, TypeError) as error:
                raise CommandError(f"{path}, line {number}: not a {{\"text\", \"pii\"}} object ({error})") from error
            unknown = set(truth) - set(KINDS)
            if unknown:
                raise CommandError(f"{path}, line {number}: unknown kind(s) {', '.join(sorted(unknown))}")
            items.append((text, truth))
        started = time.perf_counter()
        measured = pii_measure(items, seen=detector_trained_name_words())
        elapsed = time.perf_counter() - started
        self.stdout.write(f"PII detector: {pii_detector_description()['text']}")
        self.stdout.write(f"{len(items)} messages from {path}, scanned in {elapsed:.2f} s:")
        for line in pii_measure_lines(measured):
            self.stdout.write(line)
        if options.get("record"):
            ner_dir = pii_detector_description().get("ner_fine_tuned")
            if not ner_dir:
                raise CommandError("--record: the detector runs without a fine-tuned NER (KSG_PII_NER); nothing to record")
            try:
                record_measurement(Path(ner_dir), path.name, len(items), measured["name"])
            except ValueError as error:
                raise CommandError(f"--record: {error}") from error
            self.stdout.write(f"recorded in {Path(ner_dir) / 'meta.json'}")
