"""Where an app registers its job kinds (from its AppConfig.ready): each spec goes into the
registry (jobs.kinds) and each executed kind gets its Celery task (jobs.tasks)."""
from django.conf import settings

from .kinds import JobKindError, JobKindSpec, job_kinds_add
from .runner import stage_time_limit
from .tasks import stage_task_define


def job_kinds_register(*specs: JobKindSpec) -> None:
    """Register kinds; a kind whose time limit exceeds KSG_LONGEST_STAGE_SECONDS (which the
    broker's visibility timeout is derived from) is refused: the broker would hand it to a second
    worker while the first still runs."""
    for spec in specs:
        if spec.executed and stage_time_limit(spec) > settings.KSG_LONGEST_STAGE_SECONDS:
            raise JobKindError(f"job kind {spec.kind!r} may run {stage_time_limit(spec)} s, longer than "
                               f"KSG_LONGEST_STAGE_SECONDS ({settings.KSG_LONGEST_STAGE_SECONDS} s)")
    job_kinds_add(*specs)
    for spec in specs:
        if spec.executed:
            stage_task_define(spec)
