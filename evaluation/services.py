"""Submitting an evaluation of a finished run's target model."""
from typing import Any

from jobs.kinds import JobParamsError
from jobs.models import Job
from jobs.services import job_submit


def evaluate_submit(*, owner, run: Job, overrides: dict[str, Any] | None = None) -> Job:
    """Queue an `evaluate` job (client queue) for the target adapter of a succeeded run, with
    the run's synthetic data, base model and professional model."""
    if run.kind != Job.Kind.RUN or run.status != Job.Status.SUCCEEDED:
        raise JobParamsError(f"job {run.pk} is not a succeeded run ({run.kind}, {run.status}); evaluate a finished run")
    target = run.children.get(kind="finetune_target")
    stages = run.params["stages"]
    params = {
        "adapter_artifact": target.artifacts.get(kind="adapter").pk,
        "synthetic_artifact": target.artifacts.get(kind="synthetic_data").pk,
        "base_model": stages["finetune_target"]["base_model"],
        "professional_model": stages["distill"]["professional_model"],
        **(overrides or {}),
    }
    return job_submit(owner=owner, kind="evaluate", params=params, dataset=run.dataset)
