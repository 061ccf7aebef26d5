"""`python manage.py ksg_evaluate --run ID [--set field=value] [--wait]`: privacy and utility of a run's target."""
import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from evaluation.services import evaluate_submit
from jobs.embedded import embedded_worker_if_needed
from jobs.follow import job_follow
from jobs.kinds import JobParamsError
from jobs.models import Job
from ksg_web.celery import app as celery_app
from synthesis.presets import override_value


class Command(BaseCommand):
    help = ("Evaluate the target model of a succeeded run: membership inference, name reconstruction, held-out "
            "loss, ROUGE-L, win-rate against the base model, IFD. Prints the report's path with --wait.")

    def add_arguments(self, parser):
        parser.add_argument("--run", type=int, required=True, help="id of a succeeded KnowledgeSG run")
        parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                            help="override an evaluation parameter, e.g. max_records=50 (repeatable)")
        parser.add_argument("--wait", action="store_true", help="follow the evaluation until it ends")

    def handle(self, *args, run, set, wait, **options):
        found = Job.objects.filter(pk=run, kind=Job.Kind.RUN).first()
        if found is None:
            raise CommandError(f"no run with id {run}")
        if settings.KSG_RUN_MODE == "embedded" and not wait:
            raise CommandError("in the embedded mode the queue lives in this process: add --wait")
        try:
            overrides = dict(override_value(f"evaluate.{item}")[1:] for item in set)
            job = evaluate_submit(owner=found.owner, run=found, overrides=overrides)
        except JobParamsError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(f"evaluation job {job.pk} queued for run {found.pk}")
        if not wait:
            return
        with embedded_worker_if_needed(celery_app):
            job = job_follow(job_id=job.pk, write=self.stdout.write)
        if job.status != "succeeded":
            raise CommandError(f"evaluation job {job.pk} {job.status}: {job.error}")
        report = settings.KSG_ARTIFACT_DIR / job.artifacts.get(kind="report").path
        self.stdout.write(json.dumps({"job": job.pk, "report": str(report)}))
