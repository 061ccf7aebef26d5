"""A run report as files: the JSON download (the report, the comparison, the library versions)
and the CSV (the comparison, the privacy accounting, every stage parameter, the versions)."""
import csv
import io
from importlib import metadata
from typing import Any

from django.utils import timezone

from jobs.json_safe import json_safe
from jobs.models import Job
from privacy.compliance import csv_cell
from privacy.dp.accountant import library_versions

from .report import COMPARISON_COLUMNS, report_comparison, run_report
from .report_differences import report_differences
from .report_figures import interval_columns


def report_json(run: Job, *, viewer=None, records_readable: bool = True) -> dict[str, Any]:
    """run_report, the comparison rows, KnowledgeSG's differences from the baselines (with
    intervals, report_differences) and the library versions of the server writing it."""
    comparison = report_comparison(run, viewer=viewer)
    return json_safe({**run_report(run, records_readable=records_readable), "comparison": comparison,
                      "differences": report_differences(comparison), "library_versions": report_library_versions()})


def report_csv(run: Job, *, viewer=None) -> str:
    """The comparison table (each figure followed by its 95% interval's low and high and its
    sample size, report_figures.interval_columns), KnowledgeSG's differences from the baselines,
    then the privacy accounting, every stage
    parameter and the library versions, as sections of one CSV (a title row, a header row, rows;
    a blank row between)."""
    report = run_report(run)
    columns = interval_columns(COMPARISON_COLUMNS)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["KnowledgeSG run report", f"run {run.pk}", f"generated {timezone.now().isoformat()}"])
    writer.writerow([])
    writer.writerow(["comparison"])
    writer.writerow([label for _, label in columns])
    comparison = report_comparison(run, viewer=viewer)
    for row in comparison:
        writer.writerow([csv_cell(row.get(key), sort_keys=False) for key, _ in columns])
    writer.writerows([[], ["differences (KnowledgeSG minus the baseline, 95% interval)"],
                      ["against", "figure", "KnowledgeSG", "baseline", "difference", "low", "high", "reading"]])
    for against in report_differences(comparison):
        for figure in against["figures"]:
            writer.writerow([against["against"], figure["label"]] + [
                csv_cell(figure[key], sort_keys=False) for key in ("method", "other", "difference", "low", "high")
            ] + [figure["reading"]])
    privacy = report["privacy"]
    mechanism = privacy["mechanism"]
    writer.writerows([[], ["privacy"], ["quantity", "value"]])
    for name, value in (("guarantee", privacy["label"]), ("epsilon", privacy["epsilon_display"]),
                        ("epsilon unit", privacy["epsilon_unit"]),
                        ("delta", privacy["delta"]), ("target epsilon", privacy["target_epsilon"]),
                        ("accountant", privacy["accountant"]), ("sample rate", mechanism.get("sample_rate")),
                        ("noise multiplier", mechanism.get("noise_multiplier")), ("steps", mechanism.get("steps")),
                        ("max grad norm", mechanism.get("max_grad_norm"))):
        writer.writerow([name, csv_cell(value, sort_keys=False)])
    writer.writerows([[], ["parameters"], ["stage", "parameter", "value"]])
    for stage, params in report["parameters"].items():
        for name, value in params.items():
            writer.writerow([stage, name, csv_cell(value, sort_keys=False)])
    writer.writerows([[], ["library versions"], ["library", "report server", "at the epsilon commit"]])
    now, committed = report_library_versions(), mechanism.get("library_versions") or {}
    for name in sorted(set(now) | set(committed)):
        writer.writerow([name, csv_cell(now.get(name), sort_keys=False), csv_cell(committed.get(name), sort_keys=False)])
    return buffer.getvalue()


def report_library_versions() -> dict[str, str | None]:
    """Versions of the libraries behind the numbers: the accountant's (opacus, torch, numpy,
    scipy) plus transformers and peft. A library that is not installed is None."""
    try:
        versions: dict[str, str | None] = dict(library_versions())
    except metadata.PackageNotFoundError:
        versions = {name: _version(name) for name in ("opacus", "numpy", "scipy")}
    return versions | {name: _version(name) for name in ("transformers", "peft", "torch")}


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
