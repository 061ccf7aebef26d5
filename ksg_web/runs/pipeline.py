"""A KnowledgeSG run: a parent job of kind `run` whose children are its stages, each a Celery
job on its own queue. The run submits its first stage (stage 1 reserves its epsilon; the
`nonprivate` baseline records a non-private release instead); each time a stage succeeds, the
next is submitted with the previous stage's output artifact id as its input. Every run ends
with an evaluation of the model it produced. A failed or cancelled stage ends the run the same
way; cancelling the run cancels its stage. A run above its dataset's approval threshold waits
(`awaiting_approval`, nothing reserved) until a compliance officer approves it (run_approve:
then its first stage is submitted as above) or rejects it (run_reject: it ends cancelled).

A run is KnowledgeSG itself or one of its baselines (same dataset, same report):
  knowledgesg    DP-LoRA on the private data -> synthetic instructions -> filter -> distill -> target
  dp_direct      the stage-1 DP adapter is the final model
  self_instruct  stages 2-5 from the base model alone: no private data at all
  nonprivate     plain LoRA on the private records, no DP (the leaky upper bound; needs the
                 dataset's permission)
  scrubbed       plain LoRA on the private records with every PII span the detector finds masked,
                 no DP ("why not just scrub the names out?"; a non-private release like nonprivate)
"""
import logging
from typing import Any

from django.db import transaction

from evaluation.selectors import run_evaluated_model
from jobs.artifacts import artifact_root
from jobs.db_retry import db_retried
from jobs.kinds import JobParamsError, job_kind_spec, params_as_dict, params_parse
from jobs.models import Artifact, Job, JobEvent
from jobs.services import JobStateError, job_cancel, job_event_record, job_finish_locked, job_submit
from privacy.access import is_compliance_officer
from privacy.models import AuditEntry
from privacy.selectors import job_epsilon_committed
from privacy.services import (AccessRefused, BudgetExceeded, NonPrivateRefused, approval_needed, audit_record,
                              budget_changed_on_commit, run_first_stage_check)

from .kinds import EXPORT, RUN

logger = logging.getLogger(__name__)

BASELINES: dict[str, tuple[str, ...]] = {
    "knowledgesg": ("dp_finetune", "generate", "filter", "distill", "finetune_target", "evaluate"),
    "dp_direct": ("dp_finetune", "evaluate"),
    "self_instruct": ("generate", "filter", "distill", "finetune_target", "evaluate"),
    "nonprivate": ("finetune_private", "evaluate"),
    "scrubbed": ("finetune_private", "evaluate"),
}
# stage parameters a baseline fixes (what makes it that baseline); a user who sets another value is told so
BASELINE_FIXED = {"nonprivate": {"finetune_private": {"records": "raw"}},
                  "scrubbed": {"finetune_private": {"records": "scrubbed"}},
                  # the base model alone has learned no private user turn to sample (presets.BASELINE_PRESET)
                  "self_instruct": {"generate": {"prompting": "few_shot"}}}
RUN_STAGES = BASELINES["knowledgesg"]
# every kind a run may have as a stage, in pipeline order (each pipeline ends with its evaluation)
RUN_KINDS = tuple(dict.fromkeys(kind for stages in BASELINES.values() for kind in stages[:-1])) + ("evaluate",)


def run_set_fields(kind: str) -> tuple[str, ...]:
    """The parameters the run sets itself (the stage's artifact inputs); a user who sets them is told so."""
    return tuple(artifact_input.param for artifact_input in job_kind_spec(kind).inputs)


def run_stage_params(stages: dict[str, dict[str, Any]], baseline: str = "knowledgesg") -> dict[str, dict[str, Any]]:
    """Validate the parameters of every stage of the baseline's pipeline up front (inputs other
    than artifacts), so a run never fails at stage 4 on a typo. Returns them with defaults
    filled in. Stages of other pipelines (a preset gives them all) are left out."""
    if baseline not in BASELINES:
        raise JobParamsError(f"unknown baseline {baseline!r}; choose one of {', '.join(BASELINES)}")
    pipeline = BASELINES[baseline]
    missing = [kind for kind in pipeline if kind not in stages]
    unknown = sorted(set(stages) - set(RUN_KINDS))
    if missing or unknown:
        raise JobParamsError(f"a {baseline} run needs parameters for {', '.join(pipeline)}; "
                             f"missing {missing}, unknown {unknown}")
    resolved = {}
    for position, kind in enumerate(pipeline):
        raw = dict(stages[kind])
        for field_name, value in BASELINE_FIXED.get(baseline, {}).get(kind, {}).items():
            if field_name in raw and raw[field_name] != value:
                raise JobParamsError(f"{kind}.{field_name} is {value!r} in the {baseline} baseline, not {raw[field_name]!r}")
            raw[field_name] = value
        run_set = run_set_fields(kind) if position else ()
        for field_name in run_set:
            if field_name in raw:
                raise JobParamsError(f"{kind}.{field_name} is set by the run from the previous stage's output")
            raw[field_name] = 1  # a placeholder to validate the rest; replaced when the stage is submitted
        if kind == "generate" and position == 0:
            if raw.get("adapter_artifact", 0):
                raise JobParamsError("the self_instruct baseline samples from the base model alone: "
                                     "generate.adapter_artifact must not be set")
            raw["adapter_artifact"] = 0
        params = params_as_dict(params_parse(kind, raw))
        for field_name in run_set:
            params.pop(field_name)
        resolved[kind] = params
    return resolved


@transaction.atomic
def run_submit(*, owner, dataset, stages: dict[str, dict[str, Any]], preset: str = "custom",
               baseline: str = "knowledgesg") -> Job:
    """Create the run and submit its first stage in one transaction: a run whose epsilon does not
    fit the budget (BudgetExceeded), or a non-private baseline the dataset does not allow
    (NonPrivateRefused), is refused before anything exists.

    A run above its dataset's approval threshold (privacy.services.approval_needed) is checked
    the same way but only created, in status `awaiting_approval`, with no reservation yet; its
    first stage is submitted by run_approve."""
    resolved = run_stage_params(stages, baseline)
    first = BASELINES[baseline][0]
    approval = approval_needed(dataset=dataset, stage=first, params=resolved[first])
    params = {"preset": preset, "baseline": baseline, "stages": resolved}
    if approval is None:
        run = Job.objects.create(kind=RUN, owner=owner, dataset=dataset, status=Job.Status.RUNNING,
                                 params=params)
        job_event_record(job_id=run.pk, kind=JobEvent.Kind.STATUS, payload={"status": run.status, "stage": first})
        _first_stage_submit(run)
        return run
    run_first_stage_check(dataset=dataset, stage=first, params=resolved[first])
    run = Job.objects.create(kind=RUN, owner=owner, dataset=dataset, status=Job.Status.AWAITING_APPROVAL,
                             params={**params, "approval": approval})
    job_event_record(job_id=run.pk, kind=JobEvent.Kind.STATUS,
                     payload={"status": run.status, "stage": first, **approval})
    budget_changed_on_commit(dataset_id=dataset.pk)
    return run


def _first_stage_submit(run: Job) -> Job:
    """Submit the run's first stage through its kind's submit service where it has one (stage 1
    reserves its epsilon; the non-private baseline records its release). Raises what that raises."""
    first = run_pipeline(run)[0]
    params = run.params["stages"][first]
    submit = job_kind_spec(first).function("submit")
    if submit is not None:
        return submit(owner=run.owner, dataset=run.dataset, params=params, parent=run)
    return job_submit(owner=run.owner, kind=first, params=params, dataset=run.dataset, parent=run)


def run_approve(*, run: Job, actor, comment: str = "") -> Job:
    """A compliance officer lets a run that waits for approval start: the decision's audit entry,
    and the first stage submitted exactly as run_submit does (with its epsilon reservation), in
    one transaction. If the first stage is refused now (the budget no longer fits: BudgetExceeded),
    the approval stays on record and the run fails with that message. The run's owner may not
    approve their own run."""
    if not is_compliance_officer(actor):
        raise AccessRefused("only a compliance officer or an administrator may approve runs")
    with transaction.atomic():
        run = _run_awaiting_locked(run)
        if run.owner_id == actor.pk:
            raise AccessRefused(f"run {run.pk} is yours: another compliance officer must approve it")
        audit_record(action=AuditEntry.Action.RUN_APPROVED, actor=actor, dataset=run.dataset, job=run,
                     comment=comment.strip(), details=run.params.get("approval", {}))
        try:
            with transaction.atomic():  # a savepoint: a refused stage leaves nothing behind
                stage = _first_stage_submit(run)
        except (BudgetExceeded, NonPrivateRefused, JobParamsError) as error:
            job_finish_locked(run, Job.Status.FAILED,
                              error=f"approved by {actor}, but the first stage was refused: {error}")
            budget_changed_on_commit(dataset_id=run.dataset_id)
            return run
        run.status = Job.Status.RUNNING
        run.save(update_fields=["status"])
        job_event_record(job_id=run.pk, kind=JobEvent.Kind.STATUS,
                         payload={"status": run.status, "stage": stage.kind, "approved_by": actor.get_username()})
    return run


def run_reject(*, run: Job, actor, comment: str) -> Job:
    """A compliance officer refuses a run that waits for approval: it ends `cancelled`, with the
    reason in its error text and the decision (comment required) in the audit trail."""
    if not is_compliance_officer(actor):
        raise AccessRefused("only a compliance officer or an administrator may reject runs")
    if not comment.strip():
        raise ValueError("say why the run is rejected; the comment goes to its owner and the audit trail")
    with transaction.atomic():
        run = _run_awaiting_locked(run)
        audit_record(action=AuditEntry.Action.RUN_REJECTED, actor=actor, dataset=run.dataset, job=run,
                     comment=comment.strip(), details=run.params.get("approval", {}))
        job_finish_locked(run, Job.Status.CANCELLED, error=f"rejected by {actor}: {comment.strip()}")
        budget_changed_on_commit(dataset_id=run.dataset_id)
    return run


def _run_awaiting_locked(run: Job) -> Job:
    run = Job.objects.select_for_update().get(pk=run.pk)
    if run.kind != RUN or run.status != Job.Status.AWAITING_APPROVAL:
        raise JobStateError(f"job {run.pk} is {run.status}, not a run awaiting approval")
    return run


def run_pipeline(run: Job) -> tuple[str, ...]:
    """The stages of a run: its baseline's, or the ones it recorded where they differ from today's
    (runs from before evaluation existed: migration runs.0001 recorded theirs)."""
    if "pipeline" in run.params:
        return tuple(run.params["pipeline"])
    return BASELINES[run.params["baseline"]]


@db_retried
def run_child_finished(*, child_id: int) -> None:
    """Called by the runner when a child stage ends: advance, fail or cancel the run."""
    with transaction.atomic():
        child = Job.objects.select_related("parent").get(pk=child_id)
        run = Job.objects.select_for_update().get(pk=child.parent_id)
        if run.kind != RUN:
            return
        if run.is_finished:
            if child.status != Job.Status.CANCELLED:  # a cancelled stage stopped as its ended run asked
                _stage_finished_late(run, child)
            return
        if child.status != Job.Status.SUCCEEDED:
            status = Job.Status.CANCELLED if child.status == Job.Status.CANCELLED else Job.Status.FAILED
            job_finish_locked(run, status, error=f"stage {child.kind} (job {child.pk}) {child.status}: {child.error}")
            return
        pipeline = run_pipeline(run)
        position = pipeline.index(child.kind)
        if position == len(pipeline) - 1:
            job_finish_locked(run, Job.Status.SUCCEEDED)
            return
        next_kind = pipeline[position + 1]
        if run.children.filter(kind=next_kind).exists():
            return  # already advanced (a redelivered task finished the same stage twice)
        try:
            inputs = _stage_inputs(run, child, next_kind)
        except LookupError as error:
            job_finish_locked(run, Job.Status.FAILED, error=str(error))
            return
        params = {**run.params["stages"][next_kind], **inputs}
        job_event_record(job_id=run.pk, kind=JobEvent.Kind.LOG, payload={"message": f"stage {next_kind} queued",
                                                                          "stage": next_kind})
        job_submit(owner=run.owner, kind=next_kind, params=params, dataset=run.dataset, parent=run)


def _stage_finished_late(run: Job, child: Job) -> None:
    """A stage that ends (succeeded or failed, not cancelled as asked) after its run did (the run
    was cancelled, or failed, while the stage's worker still ran its last step): say so on both
    streams, once, listing the outputs the stage kept. They stay
    recorded artifacts of the stage (its page and the run summary list them); a DP stage settled
    its own epsilon whatever the run's state."""
    if child.events.filter(kind=JobEvent.Kind.LOG, payload__after_run_ended=True).exists():
        return  # already said (a redelivered task finishing the same stage again)
    outputs = [f"{artifact.kind} {artifact.path.rsplit('/', 1)[-1]} (artifact {artifact.pk})"
               for artifact in child.artifacts.order_by("pk")]
    kept = f"its outputs are kept: {', '.join(outputs)}" if outputs else "it left no outputs"
    message = f"stage {child.kind} (job {child.pk}) ended {child.status} after run {run.pk} had ended {run.status}; {kept}"
    payload = {"message": message, "after_run_ended": True, "artifacts": [artifact.pk for artifact in child.artifacts.all()]}
    job_event_record(job_id=child.pk, kind=JobEvent.Kind.LOG, payload=payload)
    job_event_record(job_id=run.pk, kind=JobEvent.Kind.LOG, payload={**payload, "stage": child.kind})
    logger.info(message)


def _stage_inputs(run: Job, child: Job, next_kind: str) -> dict[str, int]:
    """The artifact ids `next_kind` reads (its spec's inputs): each from the newest stage of the
    run that recorded a matching artifact (`child` is the stage that just finished)."""
    inputs = {}
    for wanted in job_kind_spec(next_kind).inputs:
        found = (Artifact.objects.filter(job__parent=run, job__status=Job.Status.SUCCEEDED, kind=wanted.kind)
                 .order_by("-job_id", "pk"))
        if wanted.name:
            found = found.filter(path__endswith=f"/{wanted.name}")
        artifact = found.first()
        if artifact is None and wanted.required:
            raise LookupError(f"stage {child.kind} (job {child.pk}) left no {wanted.name or wanted.kind} "
                              f"for {next_kind}.{wanted.param}")
        inputs[wanted.param] = artifact.pk if artifact else 0
    return inputs


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


def run_export(*, run: Job, actor, quantize: str = "none") -> Job:
    """Submit the export of the model a succeeded run's evaluation measured: its adapter merged
    into the base model, with a model card (ksg_web.runs.export). One export per run: one already
    queued, running or done is returned as it is. Only users who may use the run's dataset
    export; a failed or cancelled export may be submitted again. A model fit to the private
    records without DP (a client-only adapter: the nonprivate and scrubbed baselines) is never
    exported: the export runs on the server side, which may not read it."""
    evaluation = run_evaluated_model(run=run, actor=actor, use="export")
    if Artifact.objects.filter(pk=evaluation.params["adapter_artifact"], area=Artifact.Area.CLIENT).exists():
        raise JobStateError(f"run {run.pk}'s model was trained on the private records without DP; it stays on "
                            "the client side and cannot be exported")
    existing = (Job.objects.filter(kind=EXPORT, params__run_id=run.pk, params__quantize=quantize)
                .exclude(status__in=[Job.Status.FAILED, Job.Status.CANCELLED]).order_by("-pk").first())
    if existing is not None:
        return existing
    return job_submit(owner=actor, kind=EXPORT, dataset=run.dataset, params={
        "run_id": run.pk, "adapter_artifact": evaluation.params["adapter_artifact"],
        "base_model": evaluation.params["base_model"], "quantize": quantize})


def run_exports(*, run: Job):
    """The run's export jobs, newest first."""
    return Job.objects.filter(kind=EXPORT, params__run_id=run.pk).order_by("-pk")


def run_summary(*, run: Job) -> dict[str, Any]:
    """What a run produced, per stage: status, wall time, metrics, artifacts; and the epsilon spent."""
    stages, epsilon = {}, None
    for child in run.children.order_by("pk"):
        seconds = (child.finished_at - child.started_at).total_seconds() if child.finished_at and child.started_at else None
        last_metric = child.events.filter(kind=JobEvent.Kind.METRIC).order_by("-seq").first()
        stages[child.kind] = {
            "job": child.pk, "status": child.status, "seconds": seconds, "error": child.error or None,
            "last_metric": last_metric.payload if last_metric else None,
            "artifacts": {a.path.rsplit("/", 1)[-1]: str(artifact_root(a.area) / a.path) for a in child.artifacts.all()},
        }
        if child.kind == "dp_finetune":
            committed = job_epsilon_committed(job_id=child.pk)
            epsilon = None if committed is None else {"epsilon": float(committed[0]), "delta": committed[1]}
    total = (run.finished_at - run.created_at).total_seconds() if run.finished_at else None
    return {"run": run.pk, "status": run.status, "error": run.error or None, "preset": run.params.get("preset"),
            "baseline": run.params["baseline"],
            "dataset": run.dataset.name if run.dataset else None, "privacy": epsilon, "seconds": total, "stages": stages}
