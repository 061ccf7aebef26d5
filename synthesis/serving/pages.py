"""Serving pages: deploy a run's model, a deployment's keys (create, revoke), and the request
audit for compliance officers (page and CSV). Thin views over synthesis.serving.deployments."""
import csv
import io

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from jobs.ids import query_int
from jobs.selectors import jobs_visible_to
from jobs.services import JobStateError
from privacy.access import is_compliance_officer
from privacy.pii import pii_detector_description
from privacy.services import AccessRefused

from .deployments import (deployment_create, deployment_stop, deployments_manageable_by, deployments_visible_to,
                          serving_key_create, serving_key_revoke)
from ..models import CompletionAudit, ServingKey

AUDIT_PAGE = 200
AUDIT_COLUMNS = ("time", "deployment", "key", "status", "prompt_tokens", "completion_tokens", "latency_ms",
                 "stream", "filtered", "filtered_spans", "error")


@login_required
@require_POST
def deploy_view(request, job_id: int):
    run = get_object_or_404(jobs_visible_to(request.user), pk=job_id)
    try:
        deployment = deployment_create(run=run, actor=request.user,
                                       output_filter=request.POST.get("output_filter", "mask"),
                                       store_texts=request.POST.get("store_texts") == "on")
    except (JobStateError, AccessRefused, ValueError) as exc:
        messages.warning(request, str(exc))
        return redirect("jobs:detail", job_id=run.pk)
    return redirect("serving:detail", deployment_id=deployment.pk)


@login_required
@require_GET
def deployment_list(request):
    return render(request, "serving/list.html", {"deployments": deployments_visible_to(request.user).order_by("-pk")})


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def deployment_detail(request, deployment_id: int):
    """The deployment, its keys and its latest requests. POST: a new key (shown this once)."""
    deployment = get_object_or_404(deployments_visible_to(request.user), pk=deployment_id)
    manageable = deployments_manageable_by(request.user).filter(pk=deployment.pk).exists()
    context = {"deployment": deployment, "manageable": manageable, "new_key": None, "error": None,
               "endpoint": request.build_absolute_uri("/v1"), "pii_detector": pii_detector_description(),
               "low_confidence": settings.KSG_SERVE_PII_LOW_CONFIDENCE}
    status = 200
    if request.method == "POST":
        try:
            key, secret = serving_key_create(actor=request.user, name=request.POST.get("name", "").strip(),
                                             deployments=[deployment])
            context.update(new_key=secret, new_key_row=key)
        except (AccessRefused, ValueError) as exc:
            context["error"], status = str(exc), 400
    context.update(keys=deployment.keys.order_by("-pk"), audits=deployment.audits.select_related("key")[:50])
    return render(request, "serving/detail.html", context, status=status)


@login_required
@require_POST
def serving_key_revoke_view(request, key_id: int):
    key = get_object_or_404(ServingKey.objects.filter(deployments__in=deployments_manageable_by(request.user)).distinct(),
                            pk=key_id)
    serving_key_revoke(key=key, actor=request.user)
    messages.success(request, f"key {key.prefix}… ({key.name}) revoked")
    deployment = key.deployments.first()
    return redirect("serving:detail", deployment_id=deployment.pk) if deployment else redirect("serving:list")


@login_required
@require_POST
def deployment_stop_view(request, deployment_id: int):
    deployment = get_object_or_404(deployments_manageable_by(request.user), pk=deployment_id)
    deployment_stop(deployment=deployment, actor=request.user)
    messages.success(request, f"deployment {deployment.name} stopped")
    return redirect("serving:detail", deployment_id=deployment.pk)


def _officer_audits(request):
    if not is_compliance_officer(request.user):
        raise Http404("the serving audit is for compliance officers")
    audits = CompletionAudit.objects.select_related("key", "deployment").order_by("-created_at", "-id")
    if request.GET.get("deployment"):
        deployment_id = query_int(request.GET["deployment"])
        if deployment_id is None:
            raise Http404("deployment must be a deployment id")
        audits = audits.filter(deployment_id=deployment_id)
    if request.GET.get("filtered") == "1":
        audits = audits.filter(filtered=True)
    return audits


def _row(audit: CompletionAudit) -> dict:
    return {"time": audit.created_at.isoformat(), "deployment": audit.model_name, "key": audit.key.prefix if audit.key else "",
            "status": audit.status_code, "prompt_tokens": audit.prompt_tokens,
            "completion_tokens": audit.completion_tokens, "latency_ms": audit.latency_ms, "stream": audit.stream,
            "filtered": audit.filtered, "filtered_spans": audit.filtered_spans, "error": audit.error}


@login_required
@require_GET
def serving_audit(request):
    audits = _officer_audits(request)
    return render(request, "serving/audit.html", {"audits": audits[:AUDIT_PAGE], "total": audits.count(),
                                                  "filtered_only": request.GET.get("filtered") == "1"})


@login_required
@require_GET
def serving_audit_csv(request):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=AUDIT_COLUMNS)
    writer.writeheader()
    for audit in _officer_audits(request).iterator():
        writer.writerow(_row(audit))
    return HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="serving-audit.csv"'})
