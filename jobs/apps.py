from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs: lifecycle, events and the live stream"

    def ready(self):
        # imported here, not at the top: models may only be imported once the app registry is ready
        from django.urls import register_converter

        from .ids import IdConverter
        from .registry import job_kinds_register
        from .selftest import KIND

        register_converter(IdConverter, "id")  # `<id:job_id>` in every app's urls.py
        job_kinds_register(KIND)
