"""Runs, jobs, their events and artifacts over the API. A job a user may not see
(jobs.selectors.jobs_visible_to) is 404, as on the job pages."""
from datetime import datetime

from django.urls import reverse
from ninja import Query, Router, Schema, Status
from ninja.errors import HttpError
from ninja.responses import codes_4xx
from pydantic import Field

from privacy.access import datasets_usable_by
from ksg_web.runs.presets import preset_stages

from ksg_web.runs import views
from jobs.ids import DbCount, DbId
from jobs.models import Job
from ksg_web.runs.pipeline import run_cancel, run_export, run_submit, run_summary
from jobs.selectors import artifacts_visible_to, job_events_after, jobs_visible_to
from jobs.services import job_cancel
from jobs.api.auth import ErrorOut
from privacy.api import visible_dataset
from ksg_web.runs.kinds import RUN
from jobs.kinds import job_kinds

router = Router(tags=["runs and jobs"])
MAX_PAGE = 500


class RunIn(Schema):
    dataset: DbId = Field(description="id of a dataset you may use (owned or granted)")
    preset: str = Field("demo", description="demo or paper (GET /api/presets)")
    baseline: str = Field("knowledgesg", description="knowledgesg, dp_direct, self_instruct, nonprivate or scrubbed")
    domain: str = Field("medical", description="medical or finance")
    target_epsilon: float | None = Field(None, description="stage 1's target epsilon (default: the preset's)")
    base_model: str | None = Field(None, description="W_Loc spec (default: the embedded model)")
    professional_model: str | None = Field(None, description="W_Pro spec (default: the embedded model)")
    overrides: list[str] = Field(default_factory=list, max_length=200,
                                 description='stage parameters, e.g. ["generate.num_instructions=100"]')


class JobOut(Schema):
    id: int
    kind: str
    status: str
    dataset: int | None
    dataset_name: str | None
    owner: str
    parent: int | None
    params: dict
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str
    attempts: int
    cancel_requested: bool
    last_event_seq: int


class JobPageOut(Schema):
    count: int = Field(description="jobs matching the filters, over all pages")
    jobs: list[JobOut]


class ArtifactOut(Schema):
    id: int
    job: int
    kind: str
    name: str
    sha256: str
    bytes: int
    created_at: datetime
    download_url: str


class JobDetailOut(JobOut):
    children: list[JobOut]
    artifacts: list[ArtifactOut]
    summary: dict | None = Field(None, description="for runs: ksg_web.runs.pipeline.run_summary (stages, epsilon spent)")


class EventOut(Schema):
    job: int
    seq: int
    kind: str
    payload: dict
    time: str


class EventsOut(Schema):
    job: int
    status: str
    events: list[EventOut]


class RunFilters(Schema):
    dataset: DbId | None = Field(None, description="a dataset id")
    status: str | None = Field(None, description="queued, running, succeeded, failed, cancelled, ...")
    limit: int = Field(100, ge=1, le=MAX_PAGE)
    offset: DbCount = 0


class JobFilters(RunFilters):
    kind: str | None = Field(None, description="run, dp_finetune, generate, ...")


@router.post("/runs", response={201: JobDetailOut, codes_4xx: ErrorOut, 503: ErrorOut}, summary="Submit a run")
def run_create(request, payload: RunIn):
    """A KnowledgeSG run or a baseline on a dataset you may use: 400 for parameters that cannot
    run, 403 on a dataset you may see but not use (compliance officers without a grant) or a
    non-private baseline the dataset does not allow, 404 on a dataset you may not see, 409 when
    the target epsilon does not fit what is left of the budget (nothing is created then)."""
    dataset = visible_dataset(request.user, payload.dataset)
    if not datasets_usable_by(request.user).filter(pk=dataset.pk).exists():
        raise HttpError(403, f"you may see dataset '{dataset.name}' but not submit runs on it; "
                             "ask its owner or an administrator for a grant")
    stages = preset_stages(payload.preset, domain=payload.domain, target_epsilon=payload.target_epsilon,
                           base_model=payload.base_model, professional_model=payload.professional_model,
                           overrides=payload.overrides, baseline=payload.baseline)
    run = run_submit(owner=request.user, dataset=dataset, stages=stages, preset=payload.preset,
                     baseline=payload.baseline)
    return Status(201, job_detail_out(Job.objects.select_related("owner", "dataset").get(pk=run.pk)))


@router.post("/runs/{run_id}/export", response={201: JobDetailOut, codes_4xx: ErrorOut, 503: ErrorOut},
             summary="Export a run's model")
def run_export_endpoint(request, run_id: DbId):
    """The model the run's evaluation measured, merged into its base model, with a model card
    stating its privacy guarantee (an `export` job; its `model` artifact downloads as a zip that
    `AutoModelForCausalLM.from_pretrained` loads once unpacked). An export already queued,
    running or done is returned as it is. 403 without a grant on the run's dataset, 409 for a
    run that did not succeed or has no evaluation."""
    export = run_export(run=visible_job(request.user, run_id), actor=request.user)
    return Status(201, job_detail_out(Job.objects.select_related("owner", "dataset").get(pk=export.pk)))


@router.get("/runs", response={200: JobPageOut, codes_4xx: ErrorOut}, summary="Runs you may see")
def run_list(request, filters: Query[RunFilters]):
    """Like GET /api/jobs with kind=run."""
    return job_page(request.user, filters, kind=RUN)


@router.get("/jobs", response={200: JobPageOut, codes_4xx: ErrorOut}, summary="Jobs you may see")
def job_list(request, filters: Query[JobFilters]):
    """Newest first; filter by dataset id, status and kind (a run's stages are jobs too)."""
    return job_page(request.user, filters, kind=filters.kind)


@router.get("/jobs/{job_id}", response={200: JobDetailOut, codes_4xx: ErrorOut}, summary="One job or run")
def job_detail(request, job_id: DbId):
    return job_detail_out(visible_job(request.user, job_id))


@router.post("/jobs/{job_id}/cancel", response={200: JobOut, codes_4xx: ErrorOut}, summary="Cancel a job or run")
def job_cancel_endpoint(request, job_id: DbId):
    """A run is cancelled with its active stage; a queued job at once, a running one at its next
    step. 409 when it has already finished."""
    job = visible_job(request.user, job_id)
    if job.kind == RUN:
        run_cancel(run=job, actor=request.user)
    else:
        job_cancel(job=job, actor=request.user)
    return job_out(visible_job(request.user, job_id))


@router.get("/jobs/{job_id}/events", response={200: EventsOut, codes_4xx: ErrorOut}, summary="A job's events")
def job_events(request, job_id: DbId, after: DbCount = Query(0, description="the last seq you have")):
    """Up to 500 events with seq > after, oldest first (the websocket's messages); ask again
    with the last seq until the list is empty."""
    job = visible_job(request.user, job_id)
    return {"job": job.pk, "status": job.status, "events": job_events_after(job_id=job.pk, after_seq=after)}


@router.get("/artifacts/{artifact_id}/download", response={codes_4xx: ErrorOut}, summary="Download an artifact",
            url_name="artifact_download",
            openapi_extra={"responses": {200: {"description": "the file; a directory (adapter, model) as a zip",
                                               "content": {"application/octet-stream": {}}}}})
def artifact_download(request, artifact_id: DbId):
    if not artifacts_visible_to(request.user).filter(pk=artifact_id).exists():
        raise HttpError(404, f"artifact {artifact_id} not found")
    # The job pages' download: the same access check, path check and zipping of directories.
    return views.artifact_download(request, artifact_id=artifact_id)


def visible_job(user, job_id: int) -> Job:
    job = jobs_visible_to(user).filter(pk=job_id).first()
    if job is None:
        raise HttpError(404, f"job {job_id} not found")
    return job


def job_page(user, filters: RunFilters, *, kind: str | None) -> dict:
    jobs = jobs_visible_to(user)
    if filters.status is not None:
        if filters.status not in Job.Status.values:
            raise HttpError(400, f"unknown status {filters.status!r}; choose one of {', '.join(Job.Status.values)}")
        jobs = jobs.filter(status=filters.status)
    if kind is not None:
        if kind not in job_kinds():
            raise HttpError(400, f"unknown kind {kind!r}; choose one of {', '.join(sorted(job_kinds()))}")
        jobs = jobs.filter(kind=kind)
    if filters.dataset is not None:
        jobs = jobs.filter(dataset_id=filters.dataset)
    page = jobs[filters.offset:filters.offset + filters.limit]
    return {"count": jobs.count(), "jobs": [job_out(job) for job in page]}


def job_out(job: Job) -> dict:
    return {
        "id": job.pk, "kind": job.kind, "status": job.status, "dataset": job.dataset_id,
        "dataset_name": job.dataset.name if job.dataset_id else None, "owner": job.owner.get_username(),
        "parent": job.parent_id, "params": job.params, "created_at": job.created_at, "started_at": job.started_at,
        "finished_at": job.finished_at, "error": job.error, "attempts": job.attempts,
        "cancel_requested": job.cancel_requested, "last_event_seq": job.last_event_seq,
    }


def job_detail_out(job: Job) -> dict:
    children = job.children.select_related("owner", "dataset").order_by("pk")
    artifacts = [
        {"id": artifact.pk, "job": artifact.job_id, "kind": artifact.kind, "name": artifact.path.rsplit("/", 1)[-1],
         "sha256": artifact.sha256, "bytes": artifact.bytes, "created_at": artifact.created_at,
         "download_url": reverse("api:artifact_download", args=[artifact.pk])}
        for artifact in job.artifacts.all()
    ]
    return {**job_out(job), "children": [job_out(child) for child in children], "artifacts": artifacts,
            "summary": run_summary(run=job) if job.kind == RUN else None}
