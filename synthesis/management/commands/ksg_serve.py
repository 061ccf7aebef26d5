"""`python manage.py ksg_serve --run ID [--host H] [--port P]`: deploy a run's model and serve it."""
# daphne.server installs Twisted's asyncio reactor; it must be imported before anything else
# pulls in Twisted.
from daphne.server import Server  # isort:skip

import time

from daphne.endpoints import build_endpoint_description_strings
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils.module_loading import import_string

from jobs.models import Job
from jobs.services import JobStateError
from synthesis.serving.deployments import deployment_create, serving_key_create
from synthesis.serving.registry import engine_for


class Command(BaseCommand):
    help = ("Deploy a succeeded run's evaluated model (or take its active deployment) and serve it at the "
            "OpenAI-compatible /v1/chat/completions and /v1/models of this process (daphne; the rest of the "
            "platform is served too). A new serving key is created and printed once unless --no-key.")

    def add_arguments(self, parser):
        parser.add_argument("--run", type=int, required=True, help="id of a succeeded, evaluated run")
        parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=8001, help="port to listen on (default 8001)")
        parser.add_argument("--output-filter", choices=("mask", "refuse"), default="mask",
                            help="personal data in an output: mask it ([NAME], ...) or withhold the output")
        parser.add_argument("--store-texts", action="store_true", help="keep prompts and outputs in the audit")
        parser.add_argument("--requests-per-minute", type=int, default=60, help="rate limit per key (default 60)")
        parser.add_argument("--key-name", default="ksg_serve", help="name of the key created")
        parser.add_argument("--no-key", action="store_true", help="create no key (hand them out on the web page)")
        parser.add_argument("--check", action="store_true", help="load the model, print the endpoint, and exit")

    def handle(self, *args, **options):
        run = Job.objects.filter(pk=options["run"], kind="run").select_related("dataset", "owner").first()
        if run is None:
            raise CommandError(f"no run with id {options['run']}")
        if options["requests_per_minute"] < 1:
            raise CommandError("--requests-per-minute must be at least 1")
        owner = run.dataset.owner if run.dataset else run.owner  # the operator acts for the dataset's owner
        try:
            deployment = deployment_create(run=run, actor=owner, output_filter=options["output_filter"],
                                           store_texts=options["store_texts"],
                                           requests_per_minute=options["requests_per_minute"])
        except (JobStateError, ValueError) as error:
            raise CommandError(str(error)) from error
        started = time.monotonic()
        engine_for(deployment)  # load now: the first request should not wait for it
        self.stdout.write(f"deployment {deployment.name!r}: run {run.pk}'s model loaded in "
                          f"{time.monotonic() - started:.1f} s; output filter {deployment.output_filter}")
        if not options["no_key"]:
            key, secret = serving_key_create(actor=owner, name=options["key_name"], deployments=[deployment])
            self.stdout.write(f"serving key {key.prefix}… (shown once): {secret}")
        base_url = f"http://{options['host']}:{options['port']}/v1"
        self.stdout.write(f"OpenAI-compatible endpoint: {base_url}  (model={deployment.name!r})")
        self.stdout.flush()
        if options["check"]:
            return
        application = import_string(settings.ASGI_APPLICATION)  # the project's, named by its settings

        Server(application=application, signal_handlers=True,
               endpoints=build_endpoint_description_strings(host=options["host"], port=options["port"])).run()
