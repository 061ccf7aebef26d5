"""`python manage.py ksg_evaluate --run ID [--json] [--again [--set field=value]]`: a run's
privacy and utility figures, beside the baselines on the same dataset: the numbers of the run's
report page."""
import json as json_module

from django.core.management.base import BaseCommand, CommandError

from ksg_web.runs.report import COMPARISON_COLUMNS, report_comparison
from ksg_web.runs.report_figures import figure_parts, figure_problem, sample_lines
from ksg_web.runs.report_files import report_json
from ksg_web.runs.evaluate import evaluate_submit
from jobs.embedded import embedded_worker_if_needed
from jobs.follow import job_follow
from jobs.kinds import JobParamsError
from jobs.models import Job
from ksg_web.runs.presets import override_value
from ksg_web.runs.kinds import RUN


class Command(BaseCommand):
    help = ("Print a run's evaluation (membership inference, name reconstruction, canary exposure, held-out "
            "loss, ROUGE-L, win-rate and judge consistency, IFD) beside the newest evaluated run of each baseline "
            "on the same dataset. A run without an evaluation (or with --again) is evaluated first.")

    def add_arguments(self, parser):
        parser.add_argument("--run", type=int, required=True, help="id of a run")
        parser.add_argument("--json", action="store_true", help="print the whole report as JSON (as /jobs/ID/report.json)")
        parser.add_argument("--again", action="store_true", help="evaluate the run's model again before printing")
        parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                            help="with --again or a first evaluation: override an evaluation parameter, "
                                 "e.g. max_records=50 (repeatable)")

    def handle(self, *args, run, json: bool, again: bool, set: list[str], **options):
        found = Job.objects.filter(pk=run, kind=RUN).select_related("owner", "dataset").first()
        if found is None:
            raise CommandError(f"no run with id {run}")
        evaluated = found.children.filter(kind="evaluate", status=Job.Status.SUCCEEDED).exists()
        if again or not evaluated:
            self._evaluate(found, set)
        elif set:
            raise CommandError("--set changes a new evaluation: add --again")
        if json:
            self.stdout.write(_json_dumps(report_json(found)))
        else:
            self.stdout.write(comparison_table(report_comparison(found)))

    def _evaluate(self, run: Job, overrides: list[str]) -> None:
        try:
            parsed = dict(override_value(f"evaluate.{item}")[1:] for item in overrides)
            job = evaluate_submit(owner=run.owner, run=run, overrides=parsed)
        except JobParamsError as error:
            raise CommandError(str(error)) from error
        self.stderr.write(f"evaluation job {job.pk} queued for run {run.pk}")
        with embedded_worker_if_needed():
            job = job_follow(job_id=job.pk, write=self.stderr.write)
        if job.status != "succeeded":
            raise CommandError(f"evaluation job {job.pk} {job.status}: {job.error}")


def comparison_table(rows: list[dict]) -> str:
    """Metrics as lines, runs as columns (the first column is the run asked for); a figure with
    its 95% interval and sample size beside it. A figure the evaluation declined (a win-rate from
    a judge that picks by position) reads "not given (see below)", and why follows the table, as does
    why each sequentially sampled figure stopped where it did (report_figures.sample_lines)."""
    cells = [[label] + [_figure_cell(row, key) for row in rows] for key, label in COMPARISON_COLUMNS]
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in cells]
    lines += [f"run {row.get('run')}, {label}: not given: {figure_problem(row, key)}"
              for row in rows for key, label in COMPARISON_COLUMNS if figure_problem(row, key)]
    lines += [f"run {row.get('run')}, {label}: {reason}" for row in rows for label, reason in sample_lines(row)]
    return "\n".join(lines)


def _figure_cell(row: dict, key: str) -> str:
    if figure_problem(row, key):
        return "not given (see below)"
    if key.endswith("_stop_reason") and row.get(key):
        return "see below"
    interval = figure_parts(row, key)[1]
    return _cell(row.get(key)) if interval is None else f"{_cell(row.get(key))} {interval}"


def _cell(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _json_dumps(data) -> str:
    return json_module.dumps(data, indent=1, allow_nan=False, default=str)
