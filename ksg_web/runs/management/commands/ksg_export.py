"""`python manage.py ksg_export --run ID [--wait] [--out DIR]`"""
import shutil
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from jobs.embedded import embedded_worker_if_needed
from jobs.follow import job_follow
from jobs.kinds import JobParamsError
from jobs.models import Job
from ksg_web.runs.pipeline import run_export
from jobs.services import JobQueueUnavailable, JobStateError
from ksg_web.runs.kinds import RUN


class Command(BaseCommand):
    help = ("Export a succeeded run's model: the adapter its evaluation measured, merged into the base model "
            "(safetensors + tokenizer, loadable with AutoModelForCausalLM.from_pretrained), with a model card "
            "(README.md, privacy.json) stating its privacy guarantee, the dataset's name and hash, and the "
            "evaluation figures. With --wait, follow the export job; with --out, copy the model there.")

    def add_arguments(self, parser):
        parser.add_argument("--run", type=int, required=True, help="id of a succeeded run")
        parser.add_argument("--wait", action="store_true", help="follow the export until it ends")
        parser.add_argument("--out", type=Path, help="copy the merged model directory here (implies --wait)")
        parser.add_argument("--quantize", choices=("none", "gptq"), default="none",
                            help="gptq: also a 4-bit GPTQ copy (a CUDA GPU and the gpu extra)")

    def handle(self, *args, **options):
        run = Job.objects.filter(pk=options["run"], kind=RUN).select_related("owner", "dataset").first()
        if run is None:
            raise CommandError(f"no run with id {options['run']}; `ksg_evaluate --run ID` lists a run's numbers")
        out = options["out"]
        if out is not None and out.exists() and any(out.iterdir()):
            raise CommandError(f"{out} exists and is not empty; name a new directory")
        wait = options["wait"] or out is not None
        if settings.KSG_RUN_MODE == "embedded" and not wait:
            raise CommandError("in the embedded mode the queue lives in this process: add --wait")
        owner = run.dataset.owner if run.dataset else run.owner  # the operator acts for the dataset's owner
        try:
            export = run_export(run=run, actor=owner, quantize=options["quantize"])
        except (JobStateError, JobQueueUnavailable, JobParamsError) as error:
            raise CommandError(str(error)) from error
        queued = f"export job {export.pk} of run {run.pk}: {export.status}"
        if not wait:
            self.stdout.write(queued)
            return
        self.stderr.write(queued)  # progress on stderr; the result line alone on stdout
        with embedded_worker_if_needed():
            export = job_follow(job_id=export.pk, write=self.stderr.write)
        if export.status != Job.Status.SUCCEEDED:
            raise CommandError(f"export job {export.pk} {export.status}: {export.error}")
        model_dir = Path(settings.KSG_ARTIFACT_DIR) / export.artifacts.get(kind="model", path__endswith="merged_model").path
        if out is not None:
            shutil.copytree(model_dir, out, dirs_exist_ok=True)
            model_dir = out
        self.stdout.write(f"merged model: {model_dir}")
