from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs: lifecycle, events and the live stream"

    def ready(self):
        from django.urls import register_converter

        from .ids import IdConverter

        register_converter(IdConverter, "id")  # `<id:job_id>` in every app's urls.py
