"""A KnowledgeSG run: a parent job of kind `run` whose children are the five stages, each a
Celery job on its own queue. The run submits stage 1 (reserving its epsilon); each time a stage
succeeds, the next is submitted with the previous stage's output artifact id as its input. A
failed or cancelled stage ends the run the same way; cancelling the run cancels its stage."""
import logging
from typing import Any

from django.db import transaction

from .kinds import JobParamsError, params_as_dict, params_parse
from .models import Job, JobEvent
from .services import JobStateError, job_finish_locked, job_cancel, job_event_record, job_submit

logger = logging.getLogger(__name__)

RUN_STAGES = ("dp_finetune", "generate", "filter", "distill", "finetune_target")
# stage -> (its input parameter, the artifact kind it reads, the file name of that artifact)
STAGE_INPUTS = {
    "generate": ("adapter_artifact", "adapter", "adapter"),
    "filter": ("raw_artifact", "synthetic_data", "raw_instructions.jsonl"),
    "distill": ("kept_artifact", "synthetic_data", "kept_instructions.jsonl"),
    "finetune_target": ("synthetic_artifact", "synthetic_data", "synthetic_pairs.jsonl"),
}


def run_stage_params(stages: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Validate every stage's parameters up front (inputs other than artifacts), so a run never
    fails at stage 4 on a typo. Returns them with defaults filled in."""
    missing = [kind for kind in RUN_STAGES if kind not in stages]
    unknown = sorted(set(stages) - set(RUN_STAGES))
    if missing or unknown:
        raise JobParamsError(f"a run needs parameters for {', '.join(RUN_STAGES)}; missing {missing}, unknown {unknown}")
    resolved = {}
    for kind in RUN_STAGES:
        raw = dict(stages[kind])
        if kind in STAGE_INPUTS:
            field_name = STAGE_INPUTS[kind][0]
            if field_name in raw:
                raise JobParamsError(f"{kind}.{field_name} is set by the run from the previous stage's output")
            raw[field_name] = 1  # a placeholder to validate the rest; replaced when the stage is submitted
        params = params_as_dict(params_parse(kind, raw))
        params.pop(STAGE_INPUTS.get(kind, ("",))[0], None)
        resolved[kind] = params
    return resolved


@transaction.atomic
def run_submit(*, owner, dataset, stages: dict[str, dict[str, Any]], preset: str = "custom") -> Job:
    """Create the run and submit stage 1 in one transaction: a run whose epsilon does not fit
    the budget is refused (BudgetExceeded) before anything exists."""
    from privacy.services import dp_finetune_submit  # privacy depends on jobs, not the reverse, at import

    resolved = run_stage_params(stages)
    run = Job.objects.create(kind=Job.Kind.RUN, owner=owner, dataset=dataset, status=Job.Status.RUNNING,
                             params={"preset": preset, "stages": resolved})
    job_event_record(job_id=run.pk, kind=JobEvent.Kind.STATUS, payload={"status": run.status, "stage": "dp_finetune"})
    dp_finetune_submit(owner=owner, dataset=dataset, params=resolved["dp_finetune"], parent=run)
    return run


def run_child_finished(*, child_id: int) -> None:
    """Called by the runner when a child stage ends: advance, fail or cancel the run."""
    with transaction.atomic():
        child = Job.objects.select_related("parent").get(pk=child_id)
        run = Job.objects.select_for_update().get(pk=child.parent_id)
        if run.kind != Job.Kind.RUN or run.is_finished:
            return
        if child.status != Job.Status.SUCCEEDED:
            status = Job.Status.CANCELLED if child.status == Job.Status.CANCELLED else Job.Status.FAILED
            job_finish_locked(run, status, error=f"stage {child.kind} (job {child.pk}) {child.status}: {child.error}")
            return
        position = RUN_STAGES.index(child.kind)
        if position == len(RUN_STAGES) - 1:
            job_finish_locked(run, Job.Status.SUCCEEDED)
            return
        next_kind = RUN_STAGES[position + 1]
        if run.children.filter(kind=next_kind).exists():
            return  # already advanced (a redelivered task finished the same stage twice)
        field_name, artifact_kind, filename = STAGE_INPUTS[next_kind]
        output = child.artifacts.filter(kind=artifact_kind, path__endswith=filename).first()
        if output is None:
            job_finish_locked(run, Job.Status.FAILED, error=f"stage {child.kind} (job {child.pk}) left no {filename}")
            return
        params = {**run.params["stages"][next_kind], field_name: output.pk}
        job_event_record(job_id=run.pk, kind=JobEvent.Kind.LOG, payload={"message": f"stage {next_kind} queued",
                                                                          "stage": next_kind})
        job_submit(owner=run.owner, kind=next_kind, params=params, dataset=run.dataset, parent=run)


def run_cancel(*, run: Job, actor) -> Job:
    """Cancel the run and the stage it is on."""
    with transaction.atomic():
        run = Job.objects.select_for_update().get(pk=run.pk)
        if run.is_finished:
            raise JobStateError(f"run {run.pk} is already {run.status}; there is nothing to cancel")
        active = run.children.exclude(status__in=Job.TERMINAL_STATUSES).first()
        job_finish_locked(run, Job.Status.CANCELLED, error=f"cancelled by {actor}")
    if active is not None:
        try:
            job_cancel(job=active, actor=actor)
        except JobStateError:
            logger.info("stage %s of run %s finished while the run was being cancelled", active.pk, run.pk)
    return run


def run_summary(*, run: Job) -> dict[str, Any]:
    """What a run produced, per stage: status, wall time, metrics, artifacts; and the epsilon spent."""
    from django.conf import settings

    from privacy.selectors import job_epsilon_committed

    stages, epsilon = {}, None
    for child in run.children.order_by("pk"):
        seconds = (child.finished_at - child.started_at).total_seconds() if child.finished_at and child.started_at else None
        last_metric = child.events.filter(kind=JobEvent.Kind.METRIC).order_by("-seq").first()
        stages[child.kind] = {
            "job": child.pk, "status": child.status, "seconds": seconds, "error": child.error or None,
            "last_metric": last_metric.payload if last_metric else None,
            "artifacts": {a.path.rsplit("/", 1)[-1]: str(settings.KSG_ARTIFACT_DIR / a.path) for a in child.artifacts.all()},
        }
        if child.kind == "dp_finetune":
            committed = job_epsilon_committed(job_id=child.pk)
            epsilon = None if committed is None else {"epsilon": float(committed[0]), "delta": committed[1]}
    total = (run.finished_at - run.created_at).total_seconds() if run.finished_at else None
    return {"run": run.pk, "status": run.status, "error": run.error or None, "preset": run.params.get("preset"),
            "dataset": run.dataset.name if run.dataset else None, "privacy": epsilon, "seconds": total, "stages": stages}
