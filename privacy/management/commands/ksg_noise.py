"""Print the noise multiplier that meets a target epsilon (sample rate, steps, delta) as one JSON line."""
import json

from django.core.management.base import BaseCommand, CommandError

from privacy.dp.accountant import ACCOUNTANTS, PRV_EPS_ERROR, AccountingError, noise_calibrate
from privacy.management.commands.ksg_epsilon import option_number, option_steps


class Command(BaseCommand):
    help = ("Noise multiplier sigma for STEPS DP-SGD steps at Poisson sample rate Q and DELTA whose "
            "epsilon is at most the target (and within the relative tolerance of it); one JSON line.")

    def add_arguments(self, parser):
        # Numbers are parsed in handle(), not by argparse, so bad input is a CommandError (exit 1).
        parser.add_argument("--sample-rate", required=True, help="Poisson sampling probability q in (0, 1]")
        parser.add_argument("--steps", required=True, help="number of DP-SGD steps, a whole number >= 1")
        parser.add_argument("--delta", required=True, help="delta, a probability in (0, 1)")
        parser.add_argument("--epsilon", required=True, help="target epsilon, > 0")
        parser.add_argument("--accountant", default="prv", help=f"one of {', '.join(ACCOUNTANTS)} (default prv)")
        parser.add_argument("--tolerance", default="0.01",
                            help="relative: accept epsilon in [target * (1 - tolerance), target] (default 0.01)")

    def handle(self, *args, **options):
        inputs = {
            "sample_rate": option_number(options["sample_rate"], "--sample-rate"),
            "steps": option_steps(options["steps"], "--steps"),
            "delta": option_number(options["delta"], "--delta"),
            "target_epsilon": option_number(options["epsilon"], "--epsilon"),
            "tolerance": option_number(options["tolerance"], "--tolerance"),
        }
        try:
            calibration = noise_calibrate(**inputs, accountant=options["accountant"])
        except AccountingError as error:
            raise CommandError(str(error)) from error
        report = {
            "noise_multiplier": calibration.noise_multiplier,
            "epsilon": calibration.epsilon,
            "target_epsilon": calibration.target_epsilon,
            "accountant": calibration.accountant,
            "tolerance": calibration.tolerance,
            "sample_rate": inputs["sample_rate"],
            "steps": inputs["steps"],
            "delta": inputs["delta"],
        }
        if calibration.accountant == "prv":
            report["eps_error"] = PRV_EPS_ERROR
        self.stdout.write(json.dumps(report))
