"""Celery tasks: a few lines each, they hand the job id to the runner with the stage function."""
from celery import shared_task
from django.conf import settings

from .runner import job_execute
from .selftest import selftest_run

SELFTEST_LIMIT = settings.KSG_STAGE_TIME_LIMITS["selftest"]


@shared_task(name="jobs.selftest", bind=True, time_limit=SELFTEST_LIMIT + 60, soft_time_limit=SELFTEST_LIMIT)
def selftest(self, job_id: int) -> str:
    return job_execute(job_id=job_id, celery_task_id=self.request.id, stage=selftest_run)


DP_FINETUNE_LIMIT = settings.KSG_STAGE_TIME_LIMITS["dp_finetune"]


@shared_task(name="jobs.dp_finetune", bind=True, time_limit=DP_FINETUNE_LIMIT + 300, soft_time_limit=DP_FINETUNE_LIMIT)
def dp_finetune(self, job_id: int) -> str:
    from privacy.dp_stage import dp_finetune_run  # torch and transformers load in workers only

    return job_execute(job_id=job_id, celery_task_id=self.request.id, stage=dp_finetune_run)
