"""`python manage.py ksg_dp_finetune --dataset NAME --target-epsilon E [...]`: stage 1 from a terminal."""
import dataclasses

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from jobs.embedded import embedded_worker_if_needed
from jobs.follow import job_follow
from jobs.kinds import JobParamsError
from privacy.kinds import DPFinetuneParams
from privacy.models import PrivateDataset
from privacy.services import BudgetExceeded, dp_finetune_submit


class Command(BaseCommand):
    help = ("Submit a DP-LoRA fine-tuning job (stage 1) on a registered dataset, reserving its target "
            "epsilon, and follow it until it finishes. In the embedded mode the job runs in this process.")

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True, help="name of a registered dataset")
        parser.add_argument("--owner", help="username submitting the job (default: the dataset's owner)")
        parser.add_argument("--no-wait", action="store_true", help="submit and return (distributed mode only)")
        for spec in dataclasses.fields(DPFinetuneParams):
            parser.add_argument(f"--{spec.name.replace('_', '-')}", dest=spec.name, type=spec.type,
                                default=spec.default, help=f"{spec.metadata.get('help', '')} (default {spec.default})")

    def handle(self, *args, dataset, owner, no_wait, **options):
        try:
            target = PrivateDataset.objects.select_related("budget").get(name=dataset)
        except PrivateDataset.DoesNotExist:
            raise CommandError(f"no dataset named {dataset!r}; register one with ksg_dataset_add") from None
        user = target.owner if owner is None else get_user_model().objects.filter(username=owner).first()
        if user is None:
            raise CommandError(f"no user named {owner!r}")
        params = {spec.name: options[spec.name] for spec in dataclasses.fields(DPFinetuneParams)}
        embedded = settings.KSG_RUN_MODE == "embedded"
        if embedded and no_wait:
            raise CommandError("--no-wait needs the distributed mode (REDIS_URL): the embedded queue lives in this process")
        try:
            job = dp_finetune_submit(owner=user, dataset=target, params=params)
        except (JobParamsError, BudgetExceeded) as error:
            raise CommandError(str(error)) from error
        queued = f"job {job.pk} queued on dataset {target.name!r}; epsilon {params['target_epsilon']} reserved"
        if no_wait:
            self.stdout.write(queued)
            return
        self.stderr.write(queued)  # progress on stderr; the result line alone on stdout
        with embedded_worker_if_needed():
            job = job_follow(job_id=job.pk, write=self.stderr.write)
        if job.status != "succeeded":
            raise CommandError(f"job {job.pk} {job.status}: {job.error}")
        adapter = job.artifacts.filter(kind="adapter").first()
        self.stdout.write(f"job {job.pk} succeeded; adapter: {settings.KSG_ARTIFACT_DIR / adapter.path}")
