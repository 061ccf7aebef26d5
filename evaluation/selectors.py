"""Reads of evaluations: the evaluated model of a run, which export and serving hand on."""
from jobs.kinds import job_kind_spec
from jobs.models import Job
from jobs.services import JobStateError
from privacy.access import datasets_usable_by
from privacy.services import AccessRefused


def run_evaluated_model(*, run: Job, actor, use: str) -> Job:
    """The evaluation job of a succeeded run whose model `actor` may `use` ("export", "deploy"):
    its params name the adapter artifact and base model the report measured. Raises
    JobStateError (not a run, not succeeded, not evaluated) or AccessRefused (no grant on the
    run's dataset: seeing a run is not enough to take its model)."""
    if not job_kind_spec(run.kind).child_finished:  # only a run (a job made of stages) has a model
        raise JobStateError(f"job {run.pk} is a {run.kind} job, not a run; only a run's model can {use}")
    if run.dataset_id is not None and not datasets_usable_by(actor).filter(pk=run.dataset_id).exists():
        raise AccessRefused(f"you may see run {run.pk} but not {use} its model: "
                            f"ask for a grant on dataset '{run.dataset.name}'")
    if run.status != Job.Status.SUCCEEDED:
        raise JobStateError(f"run {run.pk} is {run.status}; only a succeeded run has a model to {use}")
    evaluation = run.children.filter(kind="evaluate", status=Job.Status.SUCCEEDED).order_by("-pk").first()
    if evaluation is None:
        raise JobStateError(f"run {run.pk} has no finished evaluation; {use} a model once it is evaluated")
    return evaluation
