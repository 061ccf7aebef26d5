"""Print the epsilon of a DP-SGD run (sample rate, noise multiplier, steps, delta) as one JSON line,
or, with --dataset, a dataset's spend: the sequential sum and the composed figure side by side."""
import json

from django.core.management.base import BaseCommand, CommandError

from privacy.dp.accountant import ACCOUNTANTS, PRV_EPS_ERROR, AccountingError, epsilon_compute
from privacy.dp.composition import Mechanism, epsilon_independent
from privacy.models import LedgerEntry, PrivateDataset
from privacy.selectors import budget_figures, dataset_balance, epsilon_ceiling


class Command(BaseCommand):
    help = ("Epsilon (dimensionless) of STEPS DP-SGD steps with Poisson sample rate Q and noise "
            "multiplier S at DELTA; prints one JSON line. For prv it is the certified upper bound. "
            "With --dataset NAME instead: the dataset's spend, sequential and composed, as one JSON line.")

    def add_arguments(self, parser):
        # Numbers are parsed in handle(), not by argparse, so bad input is a CommandError (exit 1).
        parser.add_argument("--dataset", help="a registered dataset: print its sequential and composed spend")
        parser.add_argument("--sample-rate", help="Poisson sampling probability q in (0, 1]")
        parser.add_argument("--noise-multiplier", help="sigma: noise std / clipping norm, > 0")
        parser.add_argument("--steps", help="number of DP-SGD steps, a whole number >= 1")
        parser.add_argument("--delta", help="delta, a probability in (0, 1)")
        parser.add_argument("--accountant", default="prv", help=f"one of {', '.join(ACCOUNTANTS)} (default prv)")

    def handle(self, *args, **options):
        mechanism_options = ("sample_rate", "noise_multiplier", "steps", "delta")
        if options["dataset"] is not None:
            if any(options[name] is not None for name in mechanism_options):
                raise CommandError("give either --dataset or --sample-rate/--noise-multiplier/--steps/--delta, not both")
            self.stdout.write(json.dumps(dataset_spend(options["dataset"])))
            return
        missing = [f"--{name.replace('_', '-')}" for name in mechanism_options if options[name] is None]
        if missing:
            raise CommandError(f"missing {', '.join(missing)} (or give --dataset NAME for a dataset's spend)")
        inputs = {
            "sample_rate": option_number(options["sample_rate"], "--sample-rate"),
            "noise_multiplier": option_number(options["noise_multiplier"], "--noise-multiplier"),
            "steps": option_steps(options["steps"], "--steps"),
            "delta": option_number(options["delta"], "--delta"),
        }
        try:
            epsilon = epsilon_compute(**inputs, accountant=options["accountant"])
        except AccountingError as error:
            raise CommandError(str(error)) from error
        report = {"epsilon": epsilon, "accountant": options["accountant"], **inputs}
        if options["accountant"] == "prv":
            report["eps_error"] = PRV_EPS_ERROR
        self.stdout.write(json.dumps(report))


def dataset_spend(name: str) -> dict:
    """The dataset's balance with both figures (privacy.selectors.budget_figures)."""
    try:
        dataset = PrivateDataset.objects.select_related("budget").get(name=name)
    except PrivateDataset.DoesNotExist:
        raise CommandError(f"no dataset named {name!r}; register one with ksg_dataset_add") from None
    balance = dataset_balance(dataset=dataset)
    commits = LedgerEntry.objects.filter(budget__dataset=dataset, kind=LedgerEntry.Kind.COMMIT)
    mechanisms = [Mechanism.from_record(row) for row in commits.values_list("mechanism", flat=True)]
    named = [mechanism for mechanism in mechanisms if mechanism is not None]
    try:
        check = str(epsilon_ceiling(epsilon_independent(mechanisms=named, delta=dataset.budget.delta)))
    except AccountingError as error:
        check = f"not computed: {error}"
    return {"dataset": dataset.name, "epsilon_unit": dataset.epsilon_unit, "limit": str(balance.limit),
            "delta": dataset.budget.delta, "accountant": dataset.budget.accountant,
            "charged": {"spent": str(balance.spent), "reserved": str(balance.reserved), "left": str(balance.left)},
            **budget_figures(balance=balance),
            # the same commits through Google dp-accounting's PLD accountant (rows naming no mechanism left out)
            "independent_check": {"library": "dp-accounting PLDAccountant", "epsilon": check, "commits": len(named),
                                  "commits_without_mechanism": len(mechanisms) - len(named)}}


def option_number(text: str, option: str) -> float:
    """The float an option's text spells; range checks are the accountant's (AccountingError)."""
    try:
        return float(text)
    except ValueError:
        raise CommandError(f"{option} must be a number, not {text!r}") from None


def option_steps(text: str, option: str) -> int:
    """The whole number an option's text spells."""
    try:
        return int(text)
    except ValueError:
        raise CommandError(f"{option} must be a whole number of steps, not {text!r}") from None
