"""`python manage.py ksg_embedded`: the embedded server (daphne + an in-process Celery worker)."""
# daphne.server installs Twisted's asyncio reactor; it must be imported before anything else
# pulls in Twisted.
from daphne.server import Server  # isort:skip

from daphne.endpoints import build_endpoint_description_strings
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils.module_loading import import_string

from jobs.embedded import admin_ensure, embedded_worker_start
from jobs.reaper import reaper_start


class Command(BaseCommand):
    help = "Serve the platform (HTTP and websockets) with an in-process Celery worker."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1).")
        parser.add_argument("--port", type=int, default=8000, help="Port to listen on (default 8000).")
        parser.add_argument(
            "--no-worker", action="store_true",
            help="Do not start the in-process worker (when separate Celery workers serve the queues).",
        )

    def handle(self, *args, host, port, no_worker, **options):
        executor = MigrationExecutor(connection)
        if executor.migration_plan(executor.loader.graph.leaf_nodes()):
            raise CommandError("The database has unapplied migrations: run `python manage.py migrate` first.")
        username, password = admin_ensure()
        application = import_string(settings.ASGI_APPLICATION)  # the project's, named by its settings

        worker = None if no_worker else embedded_worker_start()
        if worker is not None:
            reaper_start(every_seconds=settings.KSG_REAPER_SECONDS)  # jobs of a worker that died (or a process killed earlier)
        url = f"http://{'localhost' if host in ('127.0.0.1', '0.0.0.0') else host}:{port}/"
        self.stdout.write(f"KnowledgeSG ({settings.KSG_RUN_MODE} mode, database {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]})")
        self.stdout.write(f"Data directory: {settings.KSG_DATA_DIR}")
        if password:
            self.stdout.write(f"Created the first administrator: user {username!r}, password {password!r} "
                              f"(also in {settings.KSG_DATA_DIR / 'admin-password.txt'})")
        else:
            self.stdout.write(f"Log in as the existing administrator {username!r}.")
        self.stdout.write(f"Serving at {url}", ending="\n")
        self.stdout.flush()
        try:
            Server(
                application=application,
                endpoints=build_endpoint_description_strings(host=host, port=port),
                signal_handlers=True,
            ).run()
        finally:
            if worker is not None:
                worker.stop(in_sighandler=False)
