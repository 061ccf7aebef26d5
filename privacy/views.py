"""The compliance officer's pages (compliance officers and administrators; everyone else 403):
the live budget dashboard, run approvals, the ledger and the audit trail with their exports,
and a printable audit report per dataset. Thin views over privacy.compliance (reads),
ksg_web.runs.approval_views (the decisions on runs) and privacy.access (who may)."""
import functools
import json
from decimal import Decimal, InvalidOperation

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET

from .access import datasets_visible_to, is_compliance_officer
from .compliance import (AUDIT_COLUMNS, LEDGER_COLUMNS, audit_filtered, audit_row, burndown, compliance_snapshot,
                         dataset_runs, ledger_filtered, ledger_row, rows_csv, runs_awaiting_approval)
from .forms import ApproveForm, AuditFilterForm, LedgerFilterForm, RejectForm
from .models import AuditEntry
from .selectors import budget_balance, budget_figures, ledger_for

ENTRIES_PER_PAGE = 200


def compliance_required(view):
    """Anonymous users go to the login page; users who are neither compliance officers nor
    administrators get 403."""
    @functools.wraps(view)
    @login_required
    def wrapped(request, *args, **kwargs):
        if not is_compliance_officer(request.user):
            raise PermissionDenied("the compliance pages are for compliance officers and administrators")
        return view(request, *args, **kwargs)
    return wrapped


@compliance_required
@require_GET
def dashboard(request):
    return render(request, "privacy/dashboard.html", {"snapshot": compliance_snapshot()})


@compliance_required
@require_GET
def approvals(request):
    waiting = []
    for run in runs_awaiting_approval():
        balance = budget_balance(budget=run.dataset.budget)
        approval = run.params.get("approval", {})
        waiting.append({"run": run, "approval": approval, "balance": balance,
                        "fits": _fits(approval.get("target_epsilon"), balance),
                        "own": run.owner_id == request.user.pk})
    decided = (AuditEntry.objects.filter(action__in=(AuditEntry.Action.RUN_APPROVED, AuditEntry.Action.RUN_REJECTED))
               .select_related("actor", "dataset", "job").order_by("-created_at", "-id")[:20])
    return render(request, "privacy/approvals.html", {
        "waiting": waiting, "decided": decided,
        "approve_form": ApproveForm(auto_id=False), "reject_form": RejectForm(auto_id=False),  # one per run: no ids
    })


def _fits(target: str | None, balance) -> bool | None:
    """Whether the run's target epsilon fits what is left now (None: not an epsilon, e.g. a
    non-private baseline)."""
    try:
        return balance.fits(Decimal(target))
    except (InvalidOperation, TypeError):
        return None


def _trail_page(request, *, form_class, select, template: str, export_names: tuple[str, str]):
    form = form_class(request.GET, viewer=request.user)
    if not form.is_valid():
        return render(request, template, {"form": form, "page": None}, status=400)
    entries = select(form.trail())
    page = Paginator(entries, ENTRIES_PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, template, {"form": form, "page": page, "query": query.urlencode(),
                                      "export_names": export_names})


def _trail_export(request, *, form_class, select, row, columns, name: str, fmt: str):
    form = form_class(request.GET, viewer=request.user)
    if not form.is_valid():
        return HttpResponse(f"invalid filter: {form.errors.as_text()}", status=400, content_type="text/plain")
    trail = form.trail()
    entries = select(trail)
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    disposition = f'attachment; filename="{name}-{stamp}.{fmt}"'
    if fmt == "csv":
        return StreamingHttpResponse(rows_csv((row(entry) for entry in entries.iterator()), columns),
                                     content_type="text/csv; charset=utf-8",
                                     headers={"Content-Disposition": disposition})
    rows = [row(entry) for entry in entries.iterator()]
    body = {"exported_at": timezone.now().isoformat(), "filters": trail.as_dict(), "count": len(rows), "entries": rows}
    return HttpResponse(json.dumps(body, indent=1, ensure_ascii=False, allow_nan=False),
                        content_type="application/json", headers={"Content-Disposition": disposition})


@compliance_required
@require_GET
def ledger(request):
    return _trail_page(request, form_class=LedgerFilterForm, select=ledger_filtered, template="privacy/ledger.html",
                       export_names=("compliance:ledger-csv", "compliance:ledger-json"))


@compliance_required
@require_GET
def ledger_export(request, fmt: str):
    return _trail_export(request, form_class=LedgerFilterForm, select=ledger_filtered, row=ledger_row,
                         columns=LEDGER_COLUMNS, name="ledger", fmt=fmt)


@compliance_required
@require_GET
def audit_trail(request):
    return _trail_page(request, form_class=AuditFilterForm, select=audit_filtered, template="privacy/audit.html",
                       export_names=("compliance:audit-csv", "compliance:audit-json"))


@compliance_required
@require_GET
def audit_export(request, fmt: str):
    return _trail_export(request, form_class=AuditFilterForm, select=audit_filtered, row=audit_row,
                         columns=AUDIT_COLUMNS, name="audit", fmt=fmt)


@compliance_required
@require_GET
def dataset_audit_report(request, dataset_id: int):
    """Everything about one dataset's privacy on one printable page."""
    dataset = get_object_or_404(datasets_visible_to(request.user).select_related("owner", "budget"), pk=dataset_id)
    balance = budget_balance(budget=dataset.budget)
    return render(request, "privacy/dataset_audit.html", {
        "dataset": dataset, "budget": dataset.budget, "balance": balance, "figures": budget_figures(balance=balance),
        "ledger": ledger_for(dataset=dataset), "audit": dataset.audit_entries.select_related("actor", "job"),
        "runs": dataset_runs(dataset=dataset), "burndown": burndown(dataset=dataset),
        "printed_at": timezone.now(),
    })
