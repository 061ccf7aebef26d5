"""Job pages: thin views over jobs.services and jobs.selectors."""
import tempfile
import zipfile
from pathlib import Path

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from ksg_web.runs.report import report_charts, report_comparison, run_report
from ksg_web.runs.report_differences import report_differences
from ksg_web.runs.report_files import report_csv, report_json
from privacy.access import dataset_records_readable

from jobs import services
from ksg_web.runs.forms import params_form_class
from jobs.ids import DB_INT_MAX, query_int
from jobs.kinds import JobParamsError
from jobs.models import Artifact, Job
from ksg_web.runs.pipeline import run_cancel, run_export, run_exports
from jobs.selectors import artifact_existing_file, artifacts_visible_to, job_events_after, jobs_visible_to
from ksg_web.runs.kinds import RUN
from privacy.services import AccessRefused

STANDALONE_KINDS = ("selftest",)


@login_required
@require_GET
def job_list(request):
    return render(
        request,
        "jobs/list.html",
        {"jobs": jobs_visible_to(request.user)[:200], "selftest_form": params_form_class("selftest")()},
    )


@login_required
@require_POST
def job_submit_view(request, kind: str):
    # Only the self-test is submitted on its own. Pipeline stages take artifact ids, and a stage
    # submitted here with another tenant's adapter id would sample from a model its submitter
    # may not see: stages are submitted by their run (ksg_web.runs.pipeline), exports by run_export.
    if kind not in STANDALONE_KINDS:
        raise Http404(f"no job form for {kind!r}: stages are submitted as part of a run (/runs/new/)")
    form = params_form_class(kind)(request.POST)
    if not form.is_valid():
        return render(
            request, "jobs/list.html",
            {"jobs": jobs_visible_to(request.user)[:200], "selftest_form": form}, status=400,
        )
    try:
        job = services.job_submit(owner=request.user, kind=kind, params=form.cleaned_data)
    except JobParamsError as exc:
        form.add_error(None, str(exc))
        return render(
            request, "jobs/list.html",
            {"jobs": jobs_visible_to(request.user)[:200], "selftest_form": form}, status=400,
        )
    except services.JobQueueUnavailable as exc:
        messages.error(request, str(exc))
        return redirect("jobs:list")
    return redirect("jobs:detail", job_id=job.pk)


@login_required
@require_GET
def job_detail(request, job_id: int):
    job = get_object_or_404(jobs_visible_to(request.user), pk=job_id)
    return render(request, "jobs/detail.html", {
        "job": job, "artifacts": job.artifacts.all() if _job_records_readable(request, job)
        else job.artifacts.exclude(area=Artifact.Area.CLIENT), "children": job.children.order_by("pk"),
        "exports": run_exports(run=job) if job.kind == RUN else [],
    })


@login_required
@require_GET
def job_events(request, job_id: int):
    """The stored stream as JSON: `?after=N` gives events with seq > N (at most 500)."""
    job = get_object_or_404(jobs_visible_to(request.user), pk=job_id)
    after = query_int(request.GET.get("after", "0"), minimum=0)
    if after is None:
        return HttpResponseBadRequest(f"after must be a whole number from 0 to {DB_INT_MAX} (the last seq you have)")
    events = job_events_after(job_id=job.pk, after_seq=after)
    return JsonResponse({"job": job.pk, "status": job.status, "events": events})


@login_required
@require_POST
def job_cancel_view(request, job_id: int):
    job = get_object_or_404(jobs_visible_to(request.user), pk=job_id)
    try:
        if job.kind == RUN:
            run_cancel(run=job, actor=request.user)
        else:
            services.job_cancel(job=job, actor=request.user)
    except services.JobStateError as exc:
        messages.warning(request, str(exc))
    return redirect("jobs:detail", job_id=job.pk)


@login_required
@require_POST
def run_export_view(request, job_id: int):
    """Export the run's model (merged, with a model card); show the export job."""
    run = get_object_or_404(jobs_visible_to(request.user), pk=job_id)
    try:
        export = run_export(run=run, actor=request.user)
    except (services.JobStateError, AccessRefused) as exc:
        messages.warning(request, str(exc))
        return redirect("jobs:detail", job_id=run.pk)
    except services.JobQueueUnavailable as exc:
        messages.error(request, str(exc))
        return redirect("jobs:detail", job_id=run.pk)
    return redirect("jobs:detail", job_id=export.pk)


@login_required
@require_GET
def artifact_download(request, artifact_id: int):
    """A file as is; a directory (an adapter, a model) as a zip of its files. A client-only
    artifact (it quotes private records, or was fit to them without DP) only for users who may
    read the dataset's records."""
    artifact = get_object_or_404(artifacts_visible_to(request.user).select_related("job__dataset"), pk=artifact_id)
    if artifact.area == Artifact.Area.CLIENT and not _job_records_readable(request, artifact.job):
        raise Http404("no such artifact")
    path = artifact_existing_file(artifact)
    if path is None:
        raise Http404("the artifact's file is not on this server")
    if path.is_file():
        return FileResponse(path.open("rb"), as_attachment=True, filename=path.name)
    bundle = tempfile.TemporaryFile()
    with zipfile.ZipFile(bundle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink()):
            archive.write(file, arcname=str(Path(path.name) / file.relative_to(path)))
    bundle.seek(0)
    return FileResponse(bundle, as_attachment=True, filename=f"job-{artifact.job_id}-{path.name}.zip")


def _visible_run(request, job_id: int) -> Job:
    run = get_object_or_404(jobs_visible_to(request.user), pk=job_id)
    if run.kind != RUN:
        raise Http404(f"job {job_id} is a {run.kind} job, not a run; only runs have a report")
    return run


def _records_readable(request, run: Job) -> bool:
    """Whether the report may show excerpts of the run's private records to this user."""
    return _job_records_readable(request, run)


def _job_records_readable(request, job: Job) -> bool:
    """Whether this user may read the private records of the job's dataset (and so its
    client-only artifacts)."""
    return job.dataset is not None and dataset_records_readable(request.user, job.dataset)


@login_required
@require_GET
def run_report_view(request, job_id: int):
    """The run report: privacy spent, the comparison with the baselines, charts, examples."""
    run = _visible_run(request, job_id)
    report = run_report(run, records_readable=_records_readable(request, run))
    comparison = report_comparison(run, viewer=request.user)
    return render(request, "jobs/report.html", {
        "run": run, "report": report, "comparison": comparison, "differences": report_differences(comparison),
        "charts": report_charts(report),
    })


@login_required
@require_GET
def run_report_json_view(request, job_id: int):
    run = _visible_run(request, job_id)
    return JsonResponse(report_json(run, viewer=request.user, records_readable=_records_readable(request, run)),
                        json_dumps_params={"indent": 1, "allow_nan": False})


@login_required
@require_GET
def run_report_csv_view(request, job_id: int):
    run = _visible_run(request, job_id)
    return HttpResponse(report_csv(run, viewer=request.user), content_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="run-{run.pk}-report.csv"'})
