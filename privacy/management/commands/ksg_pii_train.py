"""Fine-tune the PII detector's NER on the hand-marked messages (privacy.pii_train)."""
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from privacy.pii import DEFAULT_MODEL
from privacy.pii_train import EPOCHS, PII_TRAIN_SETS, SEED, SETS_DIR, fine_tune, read_marked, training_texts


class Command(BaseCommand):
    help = ("Fine-tune the NER of the PII detector's spaCy pipeline on hand-marked messages and copies of them "
            "with other names (privacy.pii_train); write its weights to --out, for KSG_PII_NER. Minutes on a CPU.")

    def add_arguments(self, parser):
        parser.add_argument("--out", type=Path, required=True, help="the directory to write (ner/ and meta.json)")
        parser.add_argument("--base", default=DEFAULT_MODEL, help="the installed spaCy pipeline to start from")
        parser.add_argument("--sets", nargs="+", default=list(PII_TRAIN_SETS),
                            help=f"marked .jsonl files, or names of sets in {SETS_DIR}")
        parser.add_argument("--epochs", type=int, default=EPOCHS)
        parser.add_argument("--seed", type=int, default=SEED)

    def handle(self, *args, out, base, sets, epochs, seed, **options):
        paths = [Path(s) if s.endswith(".jsonl") else SETS_DIR / f"{s}.jsonl" for s in sets]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise CommandError(f"no such marked set: {', '.join(missing)} (give .jsonl paths or names in {SETS_DIR})")
        if epochs < 1:
            raise CommandError("--epochs must be at least 1")
        import spacy

        if not (spacy.util.is_package(base) or (Path(base) / "meta.json").is_file()):
            raise CommandError(f"no spaCy pipeline {base} is installed (--base: an installed package or a directory)")
        try:
            marked = read_marked(paths)
        except (ValueError, OSError) as error:
            raise CommandError(str(error)) from error
        if not marked:
            raise CommandError(f"no marked messages in {', '.join(str(p) for p in paths)}: nothing to train on")
        texts = training_texts(marked, seed=seed)
        self.stdout.write(f"{len(marked)} marked messages from {len(paths)} sets, {len(texts)} texts with the "
                          f"name-swapped copies; fine-tuning {base}'s NER for {epochs} epochs")
        started = time.perf_counter()
        try:
            fine_tune(base, texts, out, epochs=epochs, seed=seed, sources=[p.name for p in paths], marked=len(marked),
                      log=self.stdout.write)
        except OSError as error:
            raise CommandError(f"cannot load {base} or write {out}: {error}") from error
        self.stdout.write(f"wrote {out} in {time.perf_counter() - started:.0f} s; use it with KSG_PII_NER={out}")
