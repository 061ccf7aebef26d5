"""A compliance officer's decision on a run waiting for approval (the compliance pages list them:
privacy.views.approvals; the decision is the run's: pipeline.run_approve / run_reject)."""
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from jobs.models import Job
from jobs.services import JobQueueUnavailable, JobStateError
from privacy.forms import ApproveForm, RejectForm
from privacy.services import AccessRefused
from privacy.views import compliance_required

from .kinds import RUN
from .pipeline import run_approve, run_reject


@compliance_required
@require_POST
def approval_decide(request, run_id: int, decision: str):
    run = get_object_or_404(Job, pk=run_id, kind=RUN)
    form = (ApproveForm if decision == "approve" else RejectForm)(request.POST)
    if not form.is_valid():
        messages.error(request, f"Run {run.pk} was not {decision}d: a rejection needs a comment saying why.")
        return redirect("compliance:approvals")
    try:
        if decision == "approve":
            run = run_approve(run=run, actor=request.user, comment=form.cleaned_data["comment"])
        else:
            run = run_reject(run=run, actor=request.user, comment=form.cleaned_data["comment"])
    except (AccessRefused, JobStateError, ValueError) as error:
        messages.error(request, f"Run {run.pk}: {error}")
        return redirect("compliance:approvals")
    except JobQueueUnavailable as error:
        messages.error(request, f"Run {run.pk} was approved, but {error}")
        return redirect("compliance:approvals")
    if run.status == Job.Status.FAILED:
        messages.warning(request, f"Run {run.pk} approved, but it could not start: {run.error}")
    else:
        outcome = "approved: its first stage is queued" if decision == "approve" else "rejected"
        messages.success(request, f"Run {run.pk} {outcome}.")
    return redirect("compliance:approvals")
