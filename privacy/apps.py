from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _roles_ensure(sender, **kwargs):
    from django.contrib.auth.models import Group, Permission  # imported here: models may be imported only once the app registry is ready

    from .access import role_groups_ensure  # (as above)

    role_groups_ensure(Group, Permission)


class PrivacyConfig(AppConfig):
    name = "privacy"
    verbose_name = "Privacy: datasets, budgets and the epsilon ledger"

    def ready(self):
        # after every app's post_migrate (the last one sees every permission), and after a test flush
        post_migrate.connect(_roles_ensure, dispatch_uid="privacy.roles")
        from jobs.registry import job_kinds_register
        from jobs.selectors import job_visibility_register

        from .access import jobs_visible_policy
        from .kinds import KINDS

        from django.conf import settings

        from .pii import pii_configure

        pii_configure(model=settings.KSG_PII_MODEL, ner=settings.KSG_PII_NER)  # the detector's NER model is a setting
        job_kinds_register(*KINDS)
        job_visibility_register(jobs_visible_policy)  # who sees which job is a dataset's access rule
