from django.apps import AppConfig


class SynthesisConfig(AppConfig):
    name = "synthesis"
    verbose_name = "Synthesis: models, generation, filtering, distillation"

    def ready(self):
        # imported here, not at the top: models may only be imported once the app registry is ready
        from django.conf import settings

        from jobs.registry import job_kinds_register

        from .kinds import KINDS
        from .lm.loader import generation_dtype_set

        job_kinds_register(*KINDS)
        generation_dtype_set(settings.KSG_GENERATION_DTYPE)
