"""`python manage.py ksg_run --dataset NAME --preset demo [--baseline B] [--epsilon E] [--set stage.field=value] [--wait]`"""
import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from jobs.embedded import embedded_worker_if_needed
from jobs.follow import run_follow
from jobs.kinds import JobParamsError
from ksg_web.runs.pipeline import BASELINES, run_submit, run_summary
from privacy.models import PrivateDataset
from privacy.services import BudgetExceeded, NonPrivateRefused
from ksg_web.runs.presets import PRESETS, preset_stages
from synthesis.prompts import DOMAINS


class Command(BaseCommand):
    help = ("Submit a whole KnowledgeSG run (DP fine-tuning, generation, filtering, distillation, target "
            "fine-tuning, evaluation), or one of its baselines, on a registered dataset. With --wait, show each "
            "stage's progress and print a JSON summary; the exit code is non-zero if the run does not succeed. "
            "Progress goes to stderr and the JSON summary alone to stdout, so `ksg_run ... --wait | jq .privacy` works.")

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True, help="name of a registered dataset")
        parser.add_argument("--preset", default="demo", choices=sorted(PRESETS))
        parser.add_argument("--baseline", default="knowledgesg", choices=list(BASELINES),
                            help="knowledgesg (the method), dp_direct (the stage-1 DP adapter as the model), "
                                 "self_instruct (stages 2-5 from the base model alone), nonprivate (plain LoRA on the "
                                 "private records, no DP; the dataset must allow it)")
        parser.add_argument("--domain", default="medical", choices=DOMAINS)
        parser.add_argument("--epsilon", type=float, help="target epsilon of stage 1 (default: the preset's)")
        parser.add_argument("--base-model", help="W_Loc spec (default: the embedded model)")
        parser.add_argument("--professional-model", help="W_Pro spec (default: the embedded model)")
        parser.add_argument("--set", action="append", default=[], metavar="STAGE.FIELD=VALUE",
                            help="override one stage parameter, e.g. generate.num_instructions=100 (repeatable)")
        parser.add_argument("--wait", action="store_true", help="follow the run until it ends")

    def handle(self, *args, **options):
        try:
            dataset = PrivateDataset.objects.select_related("budget").get(name=options["dataset"])
        except PrivateDataset.DoesNotExist:
            raise CommandError(f"no dataset named {options['dataset']!r}; register one with ksg_dataset_add") from None
        embedded = settings.KSG_RUN_MODE == "embedded"
        if embedded and not options["wait"]:
            raise CommandError("in the embedded mode the queue lives in this process: add --wait")
        try:
            stages = preset_stages(options["preset"], domain=options["domain"], target_epsilon=options["epsilon"],
                                   base_model=options["base_model"], professional_model=options["professional_model"],
                                   overrides=options["set"], baseline=options["baseline"])
            run = run_submit(owner=dataset.owner, dataset=dataset, stages=stages, preset=options["preset"],
                             baseline=options["baseline"])
        except (JobParamsError, BudgetExceeded, NonPrivateRefused) as error:
            raise CommandError(str(error)) from error
        # Progress on stderr, the JSON result alone on stdout: what scripts piping into jq rely on.
        self.stderr.write(f"run {run.pk} ({options['baseline']}) submitted on dataset {dataset.name!r} "
                          f"(preset {options['preset']})")
        if options["wait"]:
            with embedded_worker_if_needed():
                run = run_follow(run_id=run.pk, write=self.stderr.write)
        self.stdout.write(json.dumps(run_summary(run=run), indent=2))
        if options["wait"] and run.status != "succeeded":
            raise CommandError(f"run {run.pk} {run.status}: {run.error}")
