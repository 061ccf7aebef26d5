"""The dataset's privacy statement page (HTML, with a print stylesheet for paper or PDF). Thin:
the content is ksg_web.runs.statement's."""
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET

from privacy.access import dataset_manageable_by, datasets_visible_to, is_compliance_officer

from .statement import dataset_statement


@login_required
@require_GET
def dataset_statement_view(request, dataset_id: int):
    """Compliance officers, administrators and the dataset's owner; 404 for a dataset the user
    may not see at all."""
    dataset = get_object_or_404(datasets_visible_to(request.user).select_related("owner", "budget"), pk=dataset_id)
    if not (is_compliance_officer(request.user) or dataset_manageable_by(request.user, dataset)):
        raise PermissionDenied("the privacy statement is for compliance officers and the dataset's owner")
    return render(request, "privacy/statement.html",
                  {**dataset_statement(dataset=dataset), "printed_at": timezone.now()})
