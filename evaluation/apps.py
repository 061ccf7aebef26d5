from django.apps import AppConfig


class EvaluationConfig(AppConfig):
    name = "evaluation"
    verbose_name = "Evaluation: privacy attacks and utility metrics"

    def ready(self):
        # imported here, not at the top: models may only be imported once the app registry is ready
        from jobs.registry import job_kinds_register

        from .kinds import KINDS

        job_kinds_register(*KINDS)
