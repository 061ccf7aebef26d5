"""Forms of the data scientist's dataset pages: the upload (what dataset_register takes) and
grants. The services validate; these forms only parse, and place the services' errors next
to the field they are about."""
from decimal import Decimal

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.template.defaultfilters import filesizeformat

from .datasets import DatasetError, FIELD_PAIRS, FORMAT_BY_EXTENSION
from .models import PrivacyBudget
from .services import BudgetConfigError
from .services.datasets import MAX_AUDIT_CANARIES, MAX_CANARIES, MAX_CANARY_REPEATS, NAME_MAX_LENGTH

# A service error's first words -> the form field it is about (the rest go under the file).
ERROR_FIELDS = (
    ("epsilon limit", "epsilon_limit"), ("delta", "delta"), ("unknown accountant", "accountant"),
    ("the dataset name", "name"), ("a dataset named", "name"), ("audit canar", "audit_canaries"), ("canary", "canaries"),
    ("held-out fraction", "heldout_fraction"), ("privacy unit", "privacy_unit"),
    ("identifying field", "identifying_fields"),
)


class OversizedUpload(UploadedFile):
    """Stands in for a file past KSG_MAX_DATASET_BYTES: its size, none of its bytes."""

    def __init__(self, name: str, size: int):
        super().__init__(file=None, name=name, size=size)

    def chunks(self, chunk_size=None):
        raise ValueError("an oversized upload has no content")


class DatasetSizeLimitHandler(FileUploadHandler):
    """First upload handler of the dataset form: counts each file's bytes and, past `limit`,
    passes none on to the handlers after it (nothing more is written to disk), while the other
    fields of the request are still read, so the form can say what is wrong and keep them."""

    def __init__(self, request=None, *, limit: int):
        super().__init__(request)
        self.limit = limit
        self.received = 0

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        return None if self.received > self.limit else raw_data

    def file_complete(self, file_size):
        return OversizedUpload(self.file_name, self.received) if self.received > self.limit else None


def _accepted_text() -> str:
    pairs = ", ".join(f"{a}/{b}" for a, b in FIELD_PAIRS)
    return f"JSON Lines (.jsonl) or CSV with the fields {pairs}"


class DatasetUploadForm(forms.Form):
    file = forms.FileField(label="Dataset file")
    name = forms.CharField(max_length=NAME_MAX_LENGTH, help_text="A unique name, e.g. clinic-2024.")
    epsilon_limit = forms.DecimalField(
        label="Epsilon limit", initial=Decimal(10),
        help_text="The total epsilon every DP run on this dataset may spend together (sequential composition). "
                  "Suggested: 10, room for two runs at the demo preset's target of 4; a single run at epsilon 1-8 "
                  "is the range usually reported as a meaningful guarantee. It can be raised later (audited).",
    )
    delta = forms.FloatField(
        label="Delta", required=False,
        help_text="Probability that the guarantee fails outright; must be below 1/n for n training records. "
                  "Blank: the largest power of ten below 1/n (1e-3 for 500 records).",
    )
    accountant = forms.ChoiceField(choices=PrivacyBudget.Accountant.choices, initial=PrivacyBudget.Accountant.PRV,
                                   help_text="How epsilon is computed; both give upper bounds. PRV is tighter.")
    heldout_fraction = forms.FloatField(
        label="Held-out fraction", initial=0.1, min_value=0, max_value=0.5,
        help_text="Records kept out of training (0 to 0.5): the evaluation measures utility and membership "
                  "inference on them.",
    )
    plant_canaries = forms.BooleanField(
        label="Plant canaries", required=False,
        help_text="Random secret records added to the training split; the evaluation measures how much of them "
                  "the model gives away (exposure, in bits).",
    )
    canaries = forms.IntegerField(label="Canary count", initial=10, min_value=1, max_value=MAX_CANARIES,
                                  required=False, help_text=f"Distinct canaries (1 to {MAX_CANARIES}).")
    canary_repeats = forms.IntegerField(label="Copies of each canary", initial=1, min_value=1,
                                        max_value=MAX_CANARY_REPEATS, required=False,
                                        help_text="More copies make memorisation, and so the test, stronger.")
    audit_canaries = forms.IntegerField(
        label="Audit canaries", initial=0, min_value=0, max_value=MAX_AUDIT_CANARIES, required=False,
        help_text="Random records for the one-run privacy audit: each goes into the training split by a coin flip, "
                  "and every run's evaluation turns how well its model tells them apart into a lower bound on "
                  "epsilon. 0: runs on this dataset are not audited; 128 or more recommended.",
    )
    privacy_unit = forms.CharField(
        label="Privacy unit", required=False, max_length=100,
        help_text="The field (column) naming the person each record belongs to, e.g. patient_id: DP then protects "
                  "each person's records together and epsilon is stated per person. Blank: each record is its own "
                  "unit (a person with k records is protected only by group privacy, about k times epsilon).",
    )
    identifying_fields = forms.CharField(
        label="Identifying fields", required=False, max_length=2000,
        help_text="The fields (columns) naming the person a record is about, separated by commas, e.g. "
                  "patient_name, email. Their values stay with each record on the private volume, as the targets "
                  "of the evaluation's name-reconstruction attack. Blank: that attack relies on the PII detector "
                  "alone, which misses names outside its lists.",
    )
    drop_duplicates = forms.BooleanField(
        label="Leave out exact duplicates", required=False,
        help_text="Records with the same person, instruction and response as an earlier one. By default they are "
                  "kept and counted.",
    )
    allow_nonprivate_baselines = forms.BooleanField(
        label="Allow non-private baselines", required=False,
        help_text="Lets the nonprivate baseline train on the raw records with no DP guarantee, as the leaky upper "
                  "bound for comparison. Each such run is recorded in the ledger.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        limit = settings.KSG_MAX_DATASET_BYTES
        self.fields["file"].help_text = (f"{_accepted_text()}; UTF-8; at most {filesizeformat(limit)}. "
                                         "After an error, choose the file again: browsers do not keep it.")
        self.fields["file"].widget.attrs["accept"] = ",".join(FORMAT_BY_EXTENSION)

    def clean_file(self):
        upload = self.cleaned_data["file"]
        limit = settings.KSG_MAX_DATASET_BYTES
        if upload.size > limit:
            raise forms.ValidationError(
                f"{upload.name} is {upload.size:,} bytes ({filesizeformat(upload.size)}); the limit is {limit:,} "
                f"bytes ({filesizeformat(limit)}, KSG_MAX_DATASET_BYTES). Split the file, or ask an administrator.")
        return upload

    def clean_identifying_fields(self) -> list[str]:
        """The comma-separated names as a list (blanks between commas skipped); the service checks them."""
        return [name.strip() for name in self.cleaned_data["identifying_fields"].split(",") if name.strip()]

    def clean(self):
        cleaned = super().clean()
        cleaned["audit_canaries"] = cleaned.get("audit_canaries") or 0
        if not cleaned.get("plant_canaries"):
            cleaned["canaries"], cleaned["canary_repeats"] = 0, 1
        else:
            for name in ("canaries", "canary_repeats"):
                if cleaned.get(name) is None and name not in self.errors:
                    self.add_error(name, "needed when canaries are planted")
        return cleaned

    def add_register_error(self, error: DatasetError | BudgetConfigError) -> None:
        """dataset_register's error(s), each next to the field it is about; problems of the file
        itself (every line error of a DatasetError) under the file field."""
        messages = error.errors if isinstance(error, DatasetError) else [str(error)]
        for message in messages:
            field = next((name for prefix, name in ERROR_FIELDS if message.startswith(prefix)), "file")
            self.add_error(field, message)


class GrantForm(forms.Form):
    """Grant one user (by user name) or one group the use of a dataset."""

    username = forms.CharField(label="User", required=False, max_length=150, help_text="Their user name.")
    group = forms.ModelChoiceField(queryset=Group.objects.none(), required=False, empty_label="—",
                                   help_text="Or every member of a group.")
    can_read_records = forms.BooleanField(label="May read the raw records", required=False,
                                          help_text="Also lets them see excerpts of the private records in reports.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["group"].queryset = Group.objects.order_by("name")

    def clean(self):
        cleaned = super().clean()
        username, group = (cleaned.get("username") or "").strip(), cleaned.get("group")
        if bool(username) == bool(group):
            raise forms.ValidationError("Name either a user or a group.")
        cleaned["user"] = None
        if username:
            try:
                cleaned["user"] = get_user_model().objects.get(username=username)
            except get_user_model().DoesNotExist:
                self.add_error("username", f"there is no user named {username!r}")
        return cleaned
