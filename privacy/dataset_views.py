"""The data scientist's dataset pages: the list, the upload form, a dataset's page (records,
canaries, PII, budget, ledger, runs) and its grants. Thin: who may see or use a dataset is
privacy.access's decision, every write is an audited service."""
import tempfile
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.text import slugify
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from jobs.selectors import jobs_visible_to

from .access import dataset_manageable_by, datasets_usable_by, datasets_visible_to, is_compliance_officer
from .dataset_forms import DatasetSizeLimitHandler, DatasetUploadForm, GrantForm
from .datasets import DatasetError
from .models import PrivacyBudget
from .pii import pii_detector_description
from .selectors import (BudgetBalance, budget_figures, dataset_balance, dataset_identity_summary, dataset_unit_summary,
                        ledger_for)
from .services import (AccessRefused, BudgetConfigError, budget_composition_change, dataset_grant, dataset_register,
                       dataset_revoke)

LEDGER_ROWS = 50
UPLOAD_STAGING = "uploads"  # under KSG_PRIVATE_DIR: an upload never lands outside the private volume


def budget_summary(balance: BudgetBalance) -> dict:
    """A balance as text for the page, with the gauge's segments in percent of the limit."""
    limit = balance.limit

    def share(amount: Decimal) -> Decimal:
        return min(max(amount / limit * 100, Decimal(0)), Decimal(100)) if limit > 0 else Decimal(0)

    spent = share(balance.spent)
    reserved = min(share(balance.reserved), Decimal(100) - spent)
    return {
        "limit": _epsilon_text(limit), "spent": _epsilon_text(balance.spent),
        "reserved": _epsilon_text(balance.reserved), "left": _epsilon_text(max(balance.left, Decimal(0))),
        "overspent": balance.left < 0, "commits": balance.commits, "delta_spent": balance.delta_spent,
        "nonprivate_releases": balance.nonprivate_releases, "figures": budget_figures(balance=balance),
        # SVG attributes (not inline styles, which a strict Content-Security-Policy refuses)
        "spent_pct": f"{spent:.2f}", "reserved_pct": f"{reserved:.2f}", "reserved_x": f"{spent:.2f}",
        "left_pct": f"{Decimal(100) - spent - reserved:.2f}",
    }


def _epsilon_text(value: Decimal) -> str:
    return f"{value.normalize():f}"


@login_required
@require_GET
def dataset_list(request):
    datasets = datasets_visible_to(request.user).select_related("owner", "budget").order_by("name")
    rows = [{"dataset": dataset, "budget": budget_summary(dataset_balance(dataset=dataset))} for dataset in datasets]
    return render(request, "privacy/dataset_list.html", {
        "rows": rows, "may_upload": request.user.has_perm("privacy.add_privatedataset"),
    })


@csrf_exempt  # the size limit must be installed before the body is read; CSRF is checked just below
@login_required
def dataset_new(request):
    if not request.user.has_perm("privacy.add_privatedataset"):
        raise PermissionDenied("your role may not register datasets")
    request.upload_handlers.insert(0, DatasetSizeLimitHandler(request, limit=settings.KSG_MAX_DATASET_BYTES))
    return _dataset_new(request)


@csrf_protect
@require_http_methods(["GET", "POST"])
def _dataset_new(request):
    form = DatasetUploadForm(*((request.POST, request.FILES) if request.method == "POST" else ()))
    if request.method == "POST" and form.is_valid():
        try:
            dataset = _register_upload(form.cleaned_data, owner=request.user)
        except (DatasetError, BudgetConfigError) as error:
            form.add_register_error(error)
        else:
            messages.success(request, f"Dataset {dataset.name} registered: {dataset.record_count} records "
                                      f"({dataset.train_count} for training, {dataset.heldout_count} held out); "
                                      f"{dataset_unit_summary(dataset)}; {dataset_identity_summary(dataset)}.")
            return redirect("datasets:detail", dataset_id=dataset.pk)
    status = 400 if request.method == "POST" else 200
    return render(request, "privacy/dataset_new.html", {"form": form}, status=status)


def _register_upload(data: dict, *, owner):
    """Copy the upload into a staging directory on the private volume, register it, and remove
    the copy (dataset_register keeps its own)."""
    upload = data["file"]
    original = Path(upload.name or "dataset")
    file_name = f"{slugify(original.stem)[:80] or 'dataset'}{original.suffix.lower()[:12]}"
    staging = Path(settings.KSG_PRIVATE_DIR) / UPLOAD_STAGING
    staging.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=staging) as directory:
        source = Path(directory) / file_name
        with source.open("wb") as out:
            for chunk in upload.chunks():
                out.write(chunk)
        return dataset_register(
            owner=owner, name=data["name"], source_path=source, epsilon_limit=data["epsilon_limit"],
            delta=data["delta"], accountant=data["accountant"], heldout_fraction=data["heldout_fraction"],
            canaries=data["canaries"], canary_repeats=data["canary_repeats"],
            allow_nonprivate_baselines=data["allow_nonprivate_baselines"],
            privacy_unit=data["privacy_unit"], drop_duplicates=data["drop_duplicates"],
            identifying_fields=data["identifying_fields"], audit_canaries=data["audit_canaries"],
        )


@login_required
@require_GET
def dataset_detail(request, dataset_id: int):
    dataset = _visible_dataset(request, dataset_id)
    return render(request, "privacy/dataset_detail.html", _detail_context(request, dataset, GrantForm()))


def _detail_context(request, dataset, grant_form: GrantForm) -> dict:
    user = request.user
    may_manage = dataset_manageable_by(user, dataset)
    runs = jobs_visible_to(user).filter(kind="run", dataset=dataset).order_by("-created_at", "-pk")
    ledger = list(ledger_for(dataset=dataset).order_by("-created_at", "-id")[:LEDGER_ROWS])
    pii = dict(dataset.pii_summary or {})
    return {
        "dataset": dataset, "budget": budget_summary(dataset_balance(dataset=dataset)), "ledger": ledger,
        "ledger_total": ledger_for(dataset=dataset).count(), "runs": runs[:100],
        "pii_records": pii.pop("records_with_pii", None), "pii": pii, "pii_detector": pii_detector_description(),
        "usable": datasets_usable_by(user).filter(pk=dataset.pk).exists(),
        "may_manage": may_manage, "show_grants": may_manage or is_compliance_officer(user),
        "grants": dataset.grants.select_related("user", "group", "granted_by").order_by("created_at"),
        "grant_form": grant_form, "may_set_composition": is_compliance_officer(user),
        "composition_choices": PrivacyBudget.Composition.choices,
    }


def _visible_dataset(request, dataset_id: int):
    """The dataset if the user may see it; 404 otherwise (its existence is not confirmed)."""
    return get_object_or_404(datasets_visible_to(request.user).select_related("owner", "budget"), pk=dataset_id)


@login_required
@require_POST
def dataset_grant_view(request, dataset_id: int):
    dataset = _visible_dataset(request, dataset_id)
    form = GrantForm(request.POST)
    if form.is_valid():
        try:
            dataset_grant(dataset=dataset, actor=request.user, user=form.cleaned_data["user"],
                          group=form.cleaned_data["group"], can_read_records=form.cleaned_data["can_read_records"])
        except AccessRefused as error:
            raise PermissionDenied(str(error)) from error
        whom = form.cleaned_data["user"] or form.cleaned_data["group"]
        messages.success(request, f"{whom} may now use {dataset.name}"
                                  f"{' and read its records' if form.cleaned_data['can_read_records'] else ''}.")
        return redirect("datasets:detail", dataset_id=dataset.pk)
    if not dataset_manageable_by(request.user, dataset):
        raise PermissionDenied("only an administrator or the dataset's owner may grant access to it")
    return render(request, "privacy/dataset_detail.html", _detail_context(request, dataset, form), status=400)


@login_required
@require_POST
def dataset_revoke_view(request, dataset_id: int, grant_id: int):
    dataset = _visible_dataset(request, dataset_id)
    grant = get_object_or_404(dataset.grants.select_related("user", "group"), pk=grant_id)
    whom = grant.user or grant.group
    try:
        dataset_revoke(grant=grant, actor=request.user)
    except AccessRefused as error:
        raise PermissionDenied(str(error)) from error
    messages.success(request, f"{whom} may no longer use {dataset.name}.")
    return redirect("datasets:detail", dataset_id=dataset.pk)


@login_required
@require_POST
def dataset_composition_view(request, dataset_id: int):
    """A compliance officer sets how the dataset's DP jobs compose (budget_composition_change)."""
    dataset = _visible_dataset(request, dataset_id)
    try:
        budget_composition_change(dataset=dataset, composition=request.POST.get("composition", ""),
                                  actor=request.user, comment=request.POST.get("comment", ""))
    except AccessRefused as error:
        raise PermissionDenied(str(error)) from error
    except BudgetConfigError as error:
        messages.error(request, f"The composition policy was not changed: {error}.")
    else:
        messages.success(request, f"{dataset.name} now composes its DP jobs {request.POST['composition']}ly; "
                                  "the change is in the audit trail.")
    return redirect("datasets:detail", dataset_id=dataset.pk)
