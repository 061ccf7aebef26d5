"""Print the epsilon of a DP-SGD run (sample rate, noise multiplier, steps, delta) as one JSON line."""
import json

from django.core.management.base import BaseCommand, CommandError

from privacy.dp.accountant import ACCOUNTANTS, PRV_EPS_ERROR, AccountingError, epsilon_compute


class Command(BaseCommand):
    help = ("Epsilon (dimensionless) of STEPS DP-SGD steps with Poisson sample rate Q and noise "
            "multiplier S at DELTA; prints one JSON line. For prv it is the certified upper bound.")

    def add_arguments(self, parser):
        # Numbers are parsed in handle(), not by argparse, so bad input is a CommandError (exit 1).
        parser.add_argument("--sample-rate", required=True, help="Poisson sampling probability q in (0, 1]")
        parser.add_argument("--noise-multiplier", required=True, help="sigma: noise std / clipping norm, > 0")
        parser.add_argument("--steps", required=True, help="number of DP-SGD steps, a whole number >= 1")
        parser.add_argument("--delta", required=True, help="delta, a probability in (0, 1)")
        parser.add_argument("--accountant", default="prv", help=f"one of {', '.join(ACCOUNTANTS)} (default prv)")

    def handle(self, *args, **options):
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
