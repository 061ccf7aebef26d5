"""`python manage.py ksg_fidelity --dataset NAME [--adapter-job ID] [--prompting user_turn|few_shot]`:
sample instructions as stage 2 would and print their fidelity to the dataset's held-out
instructions (ksg_web.runs.fidelity_probe)."""
import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from jobs.models import Job
from ksg_web.runs.fidelity_probe import ProbeSettings, adapter_fidelity
from privacy.models import PrivateDataset
from privacy.services import AccessRefused
from synthesis.prompts import PROMPTING

MAX_COUNT = 5000


class Command(BaseCommand):
    help = ("Sample instructions from the base model, or from it with a stage-1 (or nonprivate) adapter, the way "
            "stage 2 samples them, and print their fidelity (MAUVE, precision, recall, density, coverage, 95% "
            "intervals) to the dataset's held-out instructions: how much of the private distribution the adapter "
            "carries. Client side: needs a grant on the dataset.")

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True, help="name of a registered dataset")
        parser.add_argument("--adapter-job", type=int, default=0,
                            help="id of a finished dp_finetune or finetune_private job on it (0: the base model alone)")
        parser.add_argument("--base-model", default="", help="W_Loc (default: the adapter job's base model, "
                                                             "else smollm2-135m-instruct)")
        parser.add_argument("--prompting", choices=PROMPTING, default="user_turn")
        parser.add_argument("--count", type=int, default=60, help="instructions to sample")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--temperature", type=float, default=0.9)
        parser.add_argument("--max-new-tokens", type=int, default=128)
        parser.add_argument("--user", default="", help="who asks (default: the dataset's owner)")
        parser.add_argument("--samples", type=int, default=5, help="sampled instructions to print")
        parser.add_argument("--json", action="store_true", help="print the whole result as JSON")

    def handle(self, *args, **options):
        dataset = PrivateDataset.objects.filter(name=options["dataset"]).first()
        if dataset is None:
            raise CommandError(f"no dataset named {options['dataset']!r}")
        actor = dataset.owner
        if options["user"]:
            actor = get_user_model().objects.filter(username=options["user"]).first()
            if actor is None:
                raise CommandError(f"no user named {options['user']!r}")
        job = None
        if options["adapter_job"]:
            job = Job.objects.filter(pk=options["adapter_job"]).first()
            if job is None:
                raise CommandError(f"no job with id {options['adapter_job']}")
        base_model = options["base_model"] or (job.params.get("base_model") if job else "") or "smollm2-135m-instruct"
        if not 10 <= options["count"] <= MAX_COUNT:
            raise CommandError(f"--count must be between 10 (fidelity needs 10 distinct texts a side) and "
                               f"{MAX_COUNT} (the bootstrap's cost grows with it), got {options['count']}")
        probe = ProbeSettings(prompting=options["prompting"], count=options["count"], seed=options["seed"],
                              temperature=options["temperature"], max_new_tokens=options["max_new_tokens"])
        try:
            result = adapter_fidelity(dataset=dataset, actor=actor, adapter_job=job, base_model=base_model, probe=probe)
        except (AccessRefused, ValueError) as error:
            raise CommandError(str(error)) from error
        if options["json"]:
            self.stdout.write(json.dumps(result, indent=2, ensure_ascii=False))
            return
        self.stdout.write(fidelity_lines(result, samples=options["samples"]))


def fidelity_lines(result: dict, *, samples: int) -> str:
    figures = result["fidelity"]
    lines = [f"sampled from {result['adapter']} ({result['prompting']}): {result['nonempty']} of "
             f"{len(result['samples'])} samples are instructions, {result['with_name']} of them name someone "
             f"(the filter stage would drop those); compared with {result['heldout']} held-out instructions"]
    if figures.get("problem"):
        lines.append(f"fidelity: not measured: {figures['problem']}")
    else:
        for name in ("mauve", "precision", "recall", "density", "coverage"):
            interval = figures[f"{name}_interval"]
            lines.append(f"  {name:9} {figures[name]:.3f} [{interval['low']:.3f}, {interval['high']:.3f}]")
        lines.append(f"  ({figures['encoder']}; MAUVE with {figures['mauve_buckets']} buckets, k = "
                     f"{figures['nearest_k']}; 95% {figures['mauve_interval']['method']})")
    for text in result["samples"][:samples]:
        lines.append("  sample: " + text.replace("\n", " / ")[:200])
    return "\n".join(lines)
