"""Datasets and their budgets over the API: list, register (multipart upload), detail, ledger.
Who sees what is privacy.access's: a dataset a user may not see is 404, as if it did not exist."""
import shutil
import tempfile
from datetime import datetime
from pathlib import Path

from django.conf import settings
from ninja import File, Form, Router, Schema, Status
from ninja.errors import HttpError
from ninja.files import UploadedFile
from ninja.responses import codes_4xx
from pydantic import Field

from privacy.access import dataset_records_readable, datasets_usable_by, datasets_visible_to
from privacy.models import PrivacyBudget, PrivateDataset
from privacy.selectors import budget_balance, budget_figures, ledger_for
from privacy.services import dataset_register

from jobs.ids import DbId, DbInt
from jobs.api.auth import ErrorOut

router = Router(tags=["datasets"])


class SequentialOut(Schema):
    epsilon: str = Field(description="sum of the committed epsilons (decimal string)")
    delta: float = Field(description="sum of the committed deltas")
    reserved: str = Field(description="sum of the open reservations (decimal string)")


class ComposedOut(Schema):
    epsilon: str = Field(description="every commit's mechanism composed at the budget's delta, plus rows naming no "
                                     "mechanism added on top (decimal string, rounded up)")
    with_reserved: str = Field(description="also the open reservations' planned mechanisms")
    delta: float = Field(description="the budget's delta plus the deltas of rows added on top")
    accountant: str
    mechanisms: int = Field(description="commits composed")
    sequential_terms: int = Field(description="rows naming no mechanism, added sequentially on top")


class CompositionOut(Schema):
    policy: str = Field(description="sequential (the sum is charged) or tight (the composed figure is charged)")
    sequential: SequentialOut
    composed: ComposedOut | None = Field(description="None when the accountant could not compose the history")
    composed_error: str | None
    versions: dict[str, str] = Field(description="versions of the libraries that computed the figures")
    versions_text: str
    text: str = Field(description="both figures in one line, as the pages show them")


class BudgetOut(Schema):
    epsilon_limit: float
    delta: float = Field(description="delta of each DP job on the dataset (a probability)")
    accountant: str
    spent: float = Field(description="what the composition policy charges: the sum of the committed epsilons "
                                     "(sequential) or their composition (tight)")
    reserved: float = Field(description="set aside by jobs that have not settled yet, as the policy charges it")
    left: float = Field(description="limit - spent - reserved")
    delta_spent: float
    commits: int
    nonprivate_releases: int = Field(description="non-private baselines trained on the raw records (no DP at all)")
    composition: CompositionOut = Field(description="the sequential and the composed figure side by side")


class DatasetOut(Schema):
    id: int
    name: str
    owner: str
    source_format: str
    record_count: int
    train_count: int
    heldout_count: int
    canary_count: int
    canary_repeats: int
    audit_canary_count: int = Field(description="audit canaries drawn for the one-run privacy audit (0: not audited)")
    allow_nonprivate_baselines: bool
    privacy_unit: str = Field(description="the field naming each record's person; empty: each record is its own unit")
    epsilon_unit: str = Field(description="what one epsilon protects: 'per record' or 'per <privacy unit field>'")
    train_units: int = Field(description="privacy units (persons, or records) in the training split")
    identifying_fields: list[str] = Field(description="the fields naming the person a record is about (their values "
                                                      "stay with the records, client side); empty: none named")
    duplicate_records: int
    duplicates_dropped: bool
    sha256: str
    size_bytes: int
    pii_summary: dict
    created_at: datetime
    usable: bool = Field(description="whether you may submit runs on it (owned or granted)")
    records_readable: bool = Field(description="whether you may read its raw records")
    budget: BudgetOut


class LedgerEntryOut(Schema):
    id: int
    kind: str = Field(description="reserve, commit, release or nonprivate")
    epsilon: float
    epsilon_unit: str = Field(description="what the epsilon protects: 'per record' or 'per <privacy unit field>'")
    delta: float
    job: int
    actor: str
    reason: str
    mechanism: dict
    created_at: datetime


class DatasetBudgetOut(Schema):
    dataset: int
    name: str
    budget: BudgetOut
    ledger: list[LedgerEntryOut]


class DatasetIn(Schema):
    name: str
    epsilon_limit: str = Field(description="total epsilon all DP jobs on the dataset may spend, e.g. '10'")
    delta: float | None = Field(None, description="default: the largest power of ten below 1/n")
    accountant: str = PrivacyBudget.Accountant.PRV.value
    heldout_fraction: float = 0.1
    split_seed: DbInt = 0
    canaries: int = 0
    canary_repeats: int = 1
    audit_canaries: int = Field(0, description="audit canaries for the one-run privacy audit, each trained on by a "
                                               "coin flip (0: runs are not audited; 128 or more recommended)")
    allow_nonprivate_baselines: bool = False
    privacy_unit: str = Field("", description="the field naming the person each record belongs to, e.g. patient_id")
    drop_duplicates: bool = Field(False, description="leave out exact duplicates (kept and counted by default)")
    identifying_fields: list[str] = Field(
        default_factory=list, description="the fields naming the person a record is about, e.g. ['patient_name']: "
                                          "their values stay with each record, client side, as the targets of "
                                          "the name-reconstruction attack")


@router.get("/datasets", response={200: list[DatasetOut], codes_4xx: ErrorOut}, summary="Datasets you may see")
def dataset_list(request):
    """Owned and granted datasets; compliance officers and administrators see every one. Each
    with its budget balance derived from the ledger."""
    usable = set(datasets_usable_by(request.user).values_list("pk", flat=True))
    datasets = datasets_visible_to(request.user).select_related("owner", "budget")
    return [dataset_out(dataset, request.user, usable=dataset.pk in usable) for dataset in datasets]


@router.post("/datasets", response={201: DatasetOut, codes_4xx: ErrorOut}, summary="Register a dataset")
def dataset_create(request, file: File[UploadedFile], payload: Form[DatasetIn]):
    """Upload a .jsonl/.json or .csv file of instruction/response records (multipart); it is
    validated, split, stored under the private directory and given its budget. Problems come
    back as 400 with one line per problem in `errors`."""
    if not request.user.has_perm("privacy.add_privatedataset"):  # the role permissions of privacy.access
        raise HttpError(403, "your role may not register datasets (data scientists and administrators may)")
    private_dir = Path(settings.KSG_PRIVATE_DIR)
    private_dir.mkdir(parents=True, exist_ok=True)
    # The upload is staged inside the private directory: private records never sit elsewhere.
    with tempfile.TemporaryDirectory(dir=private_dir, prefix="upload-") as staging:
        filename = Path(file.name or "").name  # the suffix tells the format; never a path
        source = Path(staging) / (filename if filename not in ("", ".", "..") else "upload")
        with source.open("wb") as target:
            shutil.copyfileobj(file, target, length=1 << 20)
        dataset = dataset_register(
            owner=request.user, name=payload.name, source_path=source, epsilon_limit=payload.epsilon_limit,
            delta=payload.delta, accountant=payload.accountant, heldout_fraction=payload.heldout_fraction,
            split_seed=payload.split_seed, canaries=payload.canaries, canary_repeats=payload.canary_repeats,
            allow_nonprivate_baselines=payload.allow_nonprivate_baselines,
            privacy_unit=payload.privacy_unit, drop_duplicates=payload.drop_duplicates,
            identifying_fields=payload.identifying_fields, audit_canaries=payload.audit_canaries,
        )
    return Status(201, dataset_out(dataset, request.user, usable=True))


@router.get("/datasets/{dataset_id}", response={200: DatasetOut, codes_4xx: ErrorOut}, summary="One dataset")
def dataset_detail(request, dataset_id: DbId):
    dataset = visible_dataset(request.user, dataset_id)
    usable = datasets_usable_by(request.user).filter(pk=dataset.pk).exists()
    return dataset_out(dataset, request.user, usable=usable)


@router.get("/datasets/{dataset_id}/budget", response={200: DatasetBudgetOut, codes_4xx: ErrorOut},
            summary="A dataset's budget and ledger")
def dataset_budget(request, dataset_id: DbId):
    """The balance and every ledger row (reserve, commit, release, nonprivate) with who caused
    it and why. Compliance officers: every dataset; data scientists: the ones they may use."""
    dataset = visible_dataset(request.user, dataset_id)
    ledger = [
        {"id": entry.pk, "kind": entry.kind, "epsilon": float(entry.epsilon), "delta": entry.delta, "job": entry.job_id,
         "epsilon_unit": dataset.epsilon_unit, "actor": entry.actor.get_username(), "reason": entry.reason,
         "mechanism": entry.mechanism, "created_at": entry.created_at}
        for entry in ledger_for(dataset=dataset)
    ]
    return {"dataset": dataset.pk, "name": dataset.name, "budget": budget_out(dataset.budget), "ledger": ledger}


def visible_dataset(user, dataset_id: int) -> PrivateDataset:
    """The dataset if the user may see it; 404 otherwise (whether or not it exists)."""
    dataset = datasets_visible_to(user).select_related("owner", "budget").filter(pk=dataset_id).first()
    if dataset is None:
        raise HttpError(404, f"dataset {dataset_id} not found")
    return dataset


def budget_out(budget: PrivacyBudget) -> dict:
    balance = budget_balance(budget=budget)
    return {"epsilon_limit": float(balance.limit), "delta": budget.delta, "accountant": budget.accountant,
            "spent": float(balance.spent), "reserved": float(balance.reserved), "left": float(balance.left),
            "delta_spent": balance.delta_spent, "commits": balance.commits,
            "nonprivate_releases": balance.nonprivate_releases,
            # both figures side by side; "spent"/"reserved"/"left" above are what the policy charges
            "composition": budget_figures(balance=balance)}


def dataset_out(dataset: PrivateDataset, user, *, usable: bool) -> dict:
    return {
        "id": dataset.pk, "name": dataset.name, "owner": dataset.owner.get_username(),
        "source_format": dataset.source_format, "record_count": dataset.record_count,
        "train_count": dataset.train_count, "heldout_count": dataset.heldout_count,
        "canary_count": dataset.canary_count, "canary_repeats": dataset.canary_repeats,
        "audit_canary_count": dataset.audit_canary_count,
        "allow_nonprivate_baselines": dataset.allow_nonprivate_baselines, "sha256": dataset.sha256,
        "privacy_unit": dataset.privacy_unit, "epsilon_unit": dataset.epsilon_unit, "train_units": dataset.train_units,
        "identifying_fields": list(dataset.identifying_fields),
        "duplicate_records": dataset.duplicate_records, "duplicates_dropped": dataset.duplicates_dropped,
        "size_bytes": dataset.size_bytes, "pii_summary": dataset.pii_summary, "created_at": dataset.created_at,
        "usable": usable, "records_readable": dataset_records_readable(user, dataset),
        "budget": budget_out(dataset.budget),
    }
