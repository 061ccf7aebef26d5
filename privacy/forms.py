"""Forms of the compliance pages: the ledger and audit-trail filters, approval decisions, and
the administrator's audited budget change."""
from django import forms
from django.contrib.auth import get_user_model

from .access import datasets_visible_to
from .compliance import TrailFilter
from .models import AuditEntry, EPSILON_DECIMAL_PLACES, LedgerEntry


class TrailFilterForm(forms.Form):
    """?dataset=<id>&user=<username>&date_from=YYYY-MM-DD&date_to=YYYY-MM-DD&kind=<kind>"""

    KIND_CHOICES: list[tuple[str, str]] = []
    KIND_LABEL = "Kind"

    dataset = forms.ModelChoiceField(queryset=None, required=False, empty_label="all datasets")
    user = forms.ModelChoiceField(queryset=None, required=False, to_field_name="username", empty_label="anyone",
                                  help_text="Who caused the entry.")
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To (included)", widget=forms.DateInput(attrs={"type": "date"}))
    kind = forms.ChoiceField(required=False)

    def __init__(self, data=None, *, viewer, **kwargs):
        super().__init__(data, **kwargs)
        self.fields["dataset"].queryset = datasets_visible_to(viewer).order_by("name")
        self.fields["user"].queryset = get_user_model().objects.order_by("username")
        self.fields["kind"].choices = [("", "any")] + list(self.KIND_CHOICES)
        self.fields["kind"].label = self.KIND_LABEL

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            raise forms.ValidationError("the date range ends before it starts")
        return cleaned

    def trail(self) -> TrailFilter:
        data = self.cleaned_data
        return TrailFilter(dataset=data.get("dataset"), user=data.get("user"), date_from=data.get("date_from"),
                           date_to=data.get("date_to"), kind=data.get("kind") or None)


class LedgerFilterForm(TrailFilterForm):
    KIND_CHOICES = LedgerEntry.Kind.choices


class AuditFilterForm(TrailFilterForm):
    KIND_CHOICES = AuditEntry.Action.choices
    KIND_LABEL = "Action"


class ApproveForm(forms.Form):
    comment = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}),
                              help_text="Optional; goes into the audit trail.")


class RejectForm(forms.Form):
    comment = forms.CharField(required=True, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}),
                              help_text="Required: why. The run's owner sees it; it goes into the audit trail.")

    def clean_comment(self):
        comment = self.cleaned_data["comment"].strip()
        if not comment:
            raise forms.ValidationError("say why the run is rejected")
        return comment


class BudgetChangeForm(forms.Form):
    """The administrator's budget change (Django admin): each changed value goes through its
    audited service with the one comment."""

    epsilon_limit = forms.DecimalField(min_value=0, max_digits=12, decimal_places=EPSILON_DECIMAL_PLACES,
                                       help_text="Total epsilon the dataset may spend; never below spent + reserved.")
    approval_epsilon_threshold = forms.DecimalField(
        required=False, min_value=0, max_digits=12, decimal_places=EPSILON_DECIMAL_PLACES,
        label="Approval threshold",
        help_text="Runs whose stage-1 target epsilon is above this wait for a compliance officer (empty: never).",
    )
    comment = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=2000,
                              help_text="Required: why. Written to the audit trail with the before and after values.")

    def clean_comment(self):
        comment = self.cleaned_data["comment"].strip()
        if not comment:
            raise forms.ValidationError("say why the budget changes")
        return comment
