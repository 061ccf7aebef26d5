"""The data scientist's run pages: the list of runs, the submission form, the live timeline of a
run's stages, and the side-by-side comparison of runs on one dataset. Thin: access through
privacy.access and jobs.selectors, writes through ksg_web.runs.pipeline.run_submit."""
from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from ksg_web.runs.report import BASELINE_LABELS, COMPARISON_COLUMNS, report_comparison_row
from ksg_web.runs.report_figures import INTERVAL_PATHS, figure_text
from privacy.access import dataset_records_readable, datasets_usable_by, datasets_visible_to
from privacy.selectors import dataset_balance
from privacy.services import BudgetExceeded, NonPrivateRefused
from ksg_web.runs.presets import PRESETS, preset_stages

from ksg_web.runs.forms import RunForm, preset_values
from jobs.ids import query_int
from jobs.kinds import JobParamsError, job_kind_spec
from jobs.models import Artifact, Job
from ksg_web.runs.pipeline import BASELINES, run_pipeline, run_submit
from jobs.selectors import jobs_visible_to
from jobs.services import JobQueueUnavailable
from ksg_web.runs.kinds import RUN
from jobs.kinds import job_kind_label, job_kinds

MAX_COMPARED_RUNS = 12


def _epsilon_text(value) -> str:
    """A ledger Decimal without its trailing zeros: 4.000000 -> "4", 0.25 -> "0.25"."""
    return f"{value.normalize():f}"


def _runs_visible(user):
    return jobs_visible_to(user).filter(kind=RUN)


def _target_epsilon(run: Job):
    return run.params.get("stages", {}).get("dp_finetune", {}).get("target_epsilon")


@login_required
@require_GET
def run_list(request):
    runs = _runs_visible(request.user)[:200]
    rows = [{"run": run, "baseline": BASELINE_LABELS.get(run.params["baseline"], "?"),
             "preset": run.params.get("preset", ""), "target_epsilon": _target_epsilon(run)} for run in runs]
    return render(request, "jobs/run_list.html", {"rows": rows})


def _usable_balances(user) -> tuple[Any, dict[int, dict]]:
    """The datasets the user may run on, and what each has left (epsilon, as text)."""
    datasets = datasets_usable_by(user).select_related("budget").order_by("name")
    balances = {}
    for dataset in datasets:
        balance = dataset_balance(dataset=dataset)
        threshold = dataset.approval_epsilon_threshold
        balances[dataset.pk] = {
            "name": dataset.name, "limit": _epsilon_text(balance.limit), "spent": _epsilon_text(balance.spent),
            "reserved": _epsilon_text(balance.reserved), "left": _epsilon_text(max(balance.left, Decimal(0))),
            "allow_nonprivate": dataset.allow_nonprivate_baselines,
            "approval_threshold": None if threshold is None else _epsilon_text(threshold),
        }
    return datasets, balances


@login_required
@require_http_methods(["GET", "POST"])
def run_new(request):
    """The run form: on POST, preset_stages with the form's choices and knobs, then run_submit;
    what the services refuse (budget, non-private permission, parameters) is shown on the form."""
    datasets, balances = _usable_balances(request.user)
    preset = request.POST.get("preset") or request.GET.get("preset") or "demo"
    preset = preset if preset in PRESETS else "demo"
    initial = {}
    dataset_id = query_int(request.GET.get("dataset"))  # the dataset page's "new run" link
    if request.method == "GET" and dataset_id is not None:
        initial["dataset"] = dataset_id
    form = RunForm(request.POST if request.method == "POST" else None, datasets=datasets, balances=balances,
                   preset=preset, initial=initial)
    if request.method == "POST" and form.is_valid():
        run = _run_submit_from(form, request)
        if run is not None:
            if run.status == Job.Status.AWAITING_APPROVAL:
                messages.info(request, f"Run {run.pk} waits for a compliance officer's approval: its target epsilon "
                                       "is above the dataset's approval threshold. Nothing is reserved until then.")
            return redirect("jobs:detail", job_id=run.pk)
    status = 400 if request.method == "POST" else 200
    return render(request, "jobs/run_new.html", {
        "form": form, "balances": balances, "presets": {name: preset_values(name) for name in PRESETS},
        "baselines": {name: list(stages) for name, stages in BASELINES.items()},
        "selected_balance": balances.get(_selected_dataset_id(form, balances)),
    }, status=status)


def _selected_dataset_id(form: RunForm, balances: dict[int, dict]) -> int | None:
    """The dataset the form shows selected: the submitted or initial one, else the first."""
    value = form["dataset"].value()
    try:
        return int(value) if value not in (None, "") else next(iter(balances), None)
    except (TypeError, ValueError):
        return next(iter(balances), None)


def _run_submit_from(form: RunForm, request) -> Job | None:
    data = form.cleaned_data
    target = data.get("target_epsilon")
    try:
        stages = preset_stages(data["preset"], domain=data["domain"],
                               target_epsilon=None if target is None else float(target),
                               base_model=data["base_model"], professional_model=data["professional_model"],
                               baseline=data["baseline"])
        for kind, values in form.knob_values().items():
            stages[kind].update(values)
        return run_submit(owner=request.user, dataset=data["dataset"], stages=stages, preset=data["preset"],
                          baseline=data["baseline"])
    except BudgetExceeded as error:
        form.add_error("target_epsilon", str(error))
    except NonPrivateRefused as error:
        form.add_error("baseline", str(error))
    except JobParamsError as error:
        form.add_service_error(str(error))
    except JobQueueUnavailable as error:
        # the run exists (and failed with this reason); the list shows it
        messages.error(request, str(error))
        form.add_error(None, str(error))
    return None


# --- the run page's stage timeline (rendered in jobs/detail.html and refreshed live) ------

def run_timeline(run: Job, *, viewer) -> dict[str, Any]:
    """The run's pipeline stages in order with their job, status, start, end and duration
    (seconds; up to now for a running stage), their artifacts (client-only ones only for a
    `viewer` who may read the dataset's records: they quote them), and the epsilon lines of the
    run's chart (the target and the dataset's limit)."""
    records_readable = run.dataset is not None and dataset_records_readable(viewer, run.dataset)
    try:
        pipeline = run_pipeline(run)
    except KeyError:
        pipeline = ()
    children = list(run.children.order_by("pk").prefetch_related("artifacts"))
    latest = {child.kind: child for child in children}
    labels = {kind: job_kind_label(kind) for kind in job_kinds()}
    now = timezone.now()
    rows = []
    for position, kind in enumerate(dict.fromkeys([*pipeline, *latest]), start=1):
        child = latest.get(kind)
        started = child.started_at if child else None
        end = child.finished_at if child and child.finished_at else (None if run.is_finished else now)
        seconds = (end - started).total_seconds() if started and end else None
        status = child.status if child else ("not run" if run.is_finished else "not started")
        rows.append({
            "position": position, "kind": kind, "label": labels.get(kind, kind), "job": child,
            "queue": job_kind_spec(kind).queue or "", "status": status,
            "status_class": status.replace(" ", "_"), "started": started,
            "finished": child.finished_at if child else None, "duration": _duration(seconds),
            "artifacts": [_download(artifact) for artifact in child.artifacts.all()
                          if records_readable or artifact.area != Artifact.Area.CLIENT] if child else [],
        })
    dataset = run.dataset
    limit = dataset.budget.epsilon_limit if dataset is not None and hasattr(dataset, "budget") else None
    return {"run": run, "stages": rows, "earlier": [child for child in children if latest.get(child.kind) != child],
            "target_epsilon": _target_epsilon(run),
            "epsilon_limit": None if limit is None else _epsilon_text(limit)}


def _download(artifact) -> dict[str, Any]:
    """An artifact's link text: its file name; directories (adapters, models) download as a zip."""
    return {"artifact": artifact, "name": artifact.path.rstrip("/").rsplit("/", 1)[-1],
            "zip": artifact.kind in (Artifact.Kind.ADAPTER, Artifact.Kind.MODEL)}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@login_required
@require_GET
def run_timeline_view(request, job_id: int):
    """The timeline as an HTML fragment: the run page replaces its own with it when a stage changes."""
    run = get_object_or_404(_runs_visible(request.user), pk=job_id)
    return render(request, "jobs/run_timeline.html", run_timeline(run, viewer=request.user))


# --- comparison -----------------------------------------------------------------------------

def _run_ids(request) -> list[int]:
    """`?runs=1,2,3` or `?runs=1&runs=2` (the checkboxes), in the order given, without repeats."""
    ids = []
    for value in request.GET.getlist("runs"):
        for part in value.split(","):
            part = part.strip()
            if part.isdigit() and int(part) not in ids:
                ids.append(int(part))
    return ids


@login_required
@require_GET
def run_compare(request):
    """Runs on one dataset side by side: the report's comparison figures (COMPARISON_COLUMNS)."""
    visible_datasets = datasets_visible_to(request.user).order_by("name")
    dataset = None
    if request.GET.get("dataset"):
        dataset_id = query_int(request.GET["dataset"])
        if dataset_id is None:
            raise Http404("dataset must be a dataset id")
        dataset = get_object_or_404(visible_datasets, pk=dataset_id)
    candidates = list(_runs_visible(request.user).filter(dataset=dataset)) if dataset else []
    wanted = _run_ids(request)
    by_id = {run.pk: run for run in candidates}
    chosen = [by_id[pk] for pk in wanted if pk in by_id][:MAX_COMPARED_RUNS]
    unknown = [pk for pk in wanted if pk not in by_id]
    columns = []
    for run in chosen:
        row = report_comparison_row(run)  # as the report page computes it
        columns.append(row)
    table = [{"key": key, "label": label, "values": [_cell(key, row) for row in columns]}
             for key, label in COMPARISON_COLUMNS if key != "run"]
    return render(request, "jobs/run_compare.html", {
        "datasets": visible_datasets, "dataset": dataset, "candidates": candidates, "chosen": chosen,
        "chosen_ids": [run.pk for run in chosen], "columns": columns, "table": table, "unknown": unknown,
        "max_runs": MAX_COMPARED_RUNS,
    })


def _cell(key: str, row: dict) -> str:
    """A comparison figure as text: 3 decimals (rates, AUCs, losses) with the 95% interval and
    sample size where the evaluation gives one (report_figures), deltas as they are."""
    if key in INTERVAL_PATHS:
        return figure_text(row, key)
    value = row.get(key)
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key == "created":  # ISO 8601 with microseconds: the minute is enough to tell runs apart
        return str(value)[:16].replace("T", " ")
    if isinstance(value, float):
        return f"{value:g}" if key == "delta" or (value != 0 and abs(value) < 1e-3) else f"{value:.3f}"
    return str(value)
