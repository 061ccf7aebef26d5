"""Submitting an evaluation of a finished run's model (again: every run already ends with one)."""
from typing import Any

from jobs.kinds import JobParamsError
from jobs.models import Job
from ksg_web.runs.pipeline import run_pipeline
from jobs.services import job_submit
from ksg_web.runs.kinds import RUN


def evaluate_submit(*, owner, run: Job, overrides: dict[str, Any] | None = None) -> Job:
    """Queue an `evaluate` job (client queue) of the model a succeeded run produced (its last
    stage's adapter), with the run's synthetic data if it has any, as a child of the run, so the
    run's report shows the newest evaluation."""
    if run.kind != RUN or run.status != Job.Status.SUCCEEDED:
        raise JobParamsError(f"job {run.pk} is not a succeeded run ({run.kind}, {run.status}); evaluate a finished run")
    producer = [kind for kind in run_pipeline(run) if kind != "evaluate"][-1]
    final = run.children.filter(kind=producer, status=Job.Status.SUCCEEDED).order_by("-pk").first()
    adapter = final.artifacts.filter(kind="adapter").first() if final else None
    if adapter is None:
        raise JobParamsError(f"run {run.pk} has no adapter from its {producer} stage to evaluate")
    target = run.children.filter(kind="finetune_target").order_by("-pk").first()
    synthetic = target.artifacts.filter(kind="synthetic_data").first() if target else None
    stages = run.params["stages"]
    params = {
        "base_model": stages[producer]["base_model"],
        **({"professional_model": stages["distill"]["professional_model"]} if "distill" in stages else {}),
        **stages.get("evaluate", {}),  # a run from before evaluation was a stage has none
        "adapter_artifact": adapter.pk,
        "synthetic_artifact": synthetic.pk if synthetic else 0,
        **(overrides or {}),
    }
    return job_submit(owner=owner, kind="evaluate", params=params, dataset=run.dataset, parent=run)
