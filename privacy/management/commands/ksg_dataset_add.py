"""Register a private dataset file (JSONL or CSV) with its privacy budget."""
import math
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from privacy.datasets import DatasetError
from privacy.models import PrivacyBudget
from privacy.selectors import dataset_identity_summary, dataset_unit_summary
from privacy.services import BudgetConfigError, dataset_register


class Command(BaseCommand):
    help = "Register FILE as a private dataset: validate, split into train/held-out, create its budget."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path, help=".jsonl/.json or .csv with instruction/response "
                                                    "(or input/output, question/answer) fields")
        parser.add_argument("--name", required=True, help="unique dataset name")
        parser.add_argument("--epsilon-limit", required=True, help="total epsilon all DP jobs may spend")
        parser.add_argument("--delta", help="delta per DP job, a probability below 1/n (default: the largest "
                                            "power of ten below 1/n for n training records)")
        parser.add_argument("--accountant", default="prv", help=f"one of {', '.join(PrivacyBudget.Accountant.values)}")
        parser.add_argument("--heldout-fraction", default="0.1", help="share of records held out (0 to 0.5)")
        parser.add_argument("--seed", type=int, default=0, help="seed of the train/held-out split")
        parser.add_argument("--owner", help="username of the owner (default: the first superuser)")
        parser.add_argument("--canaries", type=int, default=0, metavar="K",
                            help="plant K random canary records (a random secret each) in the training split, to "
                                 "measure memorisation by their exposure (default 0: none)")
        parser.add_argument("--canary-repeats", type=int, default=1, metavar="R",
                            help="copies of each canary in the training split (default 1)")
        parser.add_argument("--audit-canaries", type=int, default=0, metavar="M",
                            help="draw M audit canaries for the one-run privacy audit: each goes into the training "
                                 "split by a coin flip, and every run's evaluation turns how well its model tells "
                                 "them apart into a lower bound on epsilon (default 0: runs are not audited; 128 or "
                                 "more recommended)")
        parser.add_argument("--privacy-unit", default="", metavar="FIELD",
                            help="the field (column) naming the person each record belongs to, e.g. patient_id: "
                                 "DP then protects each person's records together (epsilon per FIELD). Without "
                                 "it each record is its own unit (epsilon per record)")
        parser.add_argument("--identifying-field", action="append", metavar="FIELD",
                            dest="identifying_fields",
                            help="a field (column) naming the person a record is about, e.g. patient_name or email; "
                                 "repeat for several. Its values stay with each record, client side, as the targets "
                                 "of the evaluation's name-reconstruction attack (without one, the attack relies on "
                                 "the PII detector alone)")
        parser.add_argument("--drop-duplicates", action="store_true",
                            help="leave out exact duplicates (same person, instruction and response); by default "
                                 "they are kept and counted")
        parser.add_argument("--allow-nonprivate-baselines", action="store_true",
                            help="allow the `nonprivate` baseline: plain fine-tuning on the raw records with no DP "
                                 "guarantee, recorded in the ledger as a non-private release")

    def handle(self, *args, **options):
        owner = self._owner(options["owner"])
        try:
            dataset = dataset_register(
                owner=owner, name=options["name"], source_path=options["file"],
                epsilon_limit=options["epsilon_limit"], delta=_number(options["delta"], "--delta"),
                accountant=options["accountant"], split_seed=options["seed"],
                heldout_fraction=_number(options["heldout_fraction"], "--heldout-fraction"),
                canaries=options["canaries"], canary_repeats=options["canary_repeats"],
                allow_nonprivate_baselines=options["allow_nonprivate_baselines"],
                privacy_unit=options["privacy_unit"], drop_duplicates=options["drop_duplicates"],
                identifying_fields=options["identifying_fields"] or (), audit_canaries=options["audit_canaries"],
            )
        except (DatasetError, BudgetConfigError) as error:
            raise CommandError(str(error)) from error
        except OSError as error:
            raise CommandError(f"cannot store the dataset: {error}") from error
        except DatabaseError as error:
            raise CommandError(f"could not save the dataset (nothing was registered): {error}") from error
        budget = dataset.budget
        pii = ", ".join(f"{kind} {count}" for kind, count in dataset.pii_summary.items())
        self.stdout.write(
            f"registered dataset {dataset.pk} {dataset.name!r} (owner {owner.get_username()})\n"
            f"  records: {dataset.record_count} ({dataset.source_format}, fields "
            f"{dataset.field_mapping['instruction']}/{dataset.field_mapping['response']}): "
            f"train {dataset.train_count}, held-out {dataset.heldout_count}\n"
            f"  sha256: {dataset.sha256}\n"
            f"  budget: epsilon limit {budget.epsilon_limit}, delta {budget.delta:g}, accountant {budget.accountant}\n"
            f"  {dataset_unit_summary(dataset)}\n"
            f"  {dataset_identity_summary(dataset)}\n"
            f"  PII found: {pii}"
            + (f"\n  canaries: {dataset.canary_count} planted x {dataset.canary_repeats} in the training split"
               if dataset.canary_count else "")
            + (f"\n  audit canaries: {dataset.audit_canary_count} drawn, each in the training split by a coin flip"
               if dataset.audit_canary_count else "\n  audit canaries: none (runs on this dataset are not audited)")
            + ("\n  non-private baselines: allowed" if dataset.allow_nonprivate_baselines else "")
        )

    def _owner(self, username: str | None):
        users = get_user_model().objects
        if username:
            try:
                return users.get(**{users.model.USERNAME_FIELD: username})
            except users.model.DoesNotExist:
                raise CommandError(f"no user named {username!r}") from None
        owner = users.filter(is_superuser=True).order_by("pk").first()
        if owner is None:
            raise CommandError("no superuser exists to own the dataset; create one or pass --owner USERNAME")
        return owner


def _number(text: str | None, option: str) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise CommandError(f"{option} must be a number, not {text!r}") from None
    if not math.isfinite(value):
        raise CommandError(f"{option} must be a finite number, not {text!r}")
    return value
