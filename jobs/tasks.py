"""Celery tasks: one per executed job kind (`jobs.<kind>`), each a few lines that hand the job id
to the runner with the kind's stage function. Stage modules (torch, transformers) are imported in
the worker, at run time (JobKindSpec.function)."""
from celery import shared_task

from .kinds import JobKindSpec, job_kind_spec
from .runner import job_execute, stage_time_limit


def stage_task_define(spec: JobKindSpec):
    """The Celery task that runs jobs of `spec.kind` on its queue."""
    limit = stage_time_limit(spec)

    # The hard limit leaves the soft one time to settle the job (and its epsilon) cleanly.
    @shared_task(name=f"jobs.{spec.kind}", bind=True, time_limit=limit + 300, soft_time_limit=limit)
    def run_stage(self, job_id: int) -> str:
        stage = job_kind_spec(spec.kind).function("stage")
        return job_execute(job_id=job_id, celery_task_id=self.request.id, stage=stage)

    return run_stage
