from django.apps import AppConfig


class RunsConfig(AppConfig):
    """The KnowledgeSG run: the pipeline and its baselines composed from the apps below, its
    pages, API and report (the top of the layers: nothing below imports it)."""

    name = "ksg_web.runs"
    label = "runs"
    verbose_name = "Runs: the KnowledgeSG pipeline, its baselines and report"

    def ready(self):
        # imported here, not at the top: models may only be imported once the app registry is ready
        from jobs.registry import job_kinds_register

        from .kinds import KINDS

        job_kinds_register(*KINDS)
