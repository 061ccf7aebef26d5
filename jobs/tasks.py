"""Celery tasks: one per job kind, each a few lines that hand the job id to the runner with the
stage function. Stage modules (torch, transformers) are imported in the worker, at run time."""
from importlib import import_module

from celery import shared_task
from django.conf import settings

from .runner import job_execute

STAGE_FUNCTIONS = {
    "selftest": "jobs.selftest.selftest_run",
    "dp_finetune": "privacy.dp_stage.dp_finetune_run",
    "generate": "synthesis.stages.generate_run",
    "filter": "synthesis.stages.filter_run",
    "distill": "synthesis.stages.distill_run",
    "finetune_target": "synthesis.stages.finetune_target_run",
    "finetune_private": "privacy.baseline_stage.finetune_private_run",
    "evaluate": "evaluation.stage.evaluate_run",
    "export": "synthesis.export.model_export_run",
}


def _stage_task(kind: str):
    limit = settings.KSG_STAGE_TIME_LIMITS[kind]
    module_name, function_name = STAGE_FUNCTIONS[kind].rsplit(".", 1)

    # The hard limit leaves the soft one time to settle the job (and its epsilon) cleanly.
    @shared_task(name=f"jobs.{kind}", bind=True, time_limit=limit + 300, soft_time_limit=limit)
    def run_stage(self, job_id: int) -> str:
        stage = getattr(import_module(module_name), function_name)
        return job_execute(job_id=job_id, celery_task_id=self.request.id, stage=stage)

    return run_stage


selftest = _stage_task("selftest")
dp_finetune = _stage_task("dp_finetune")
generate = _stage_task("generate")
filter_instructions = _stage_task("filter")
distill = _stage_task("distill")
finetune_target = _stage_task("finetune_target")
finetune_private = _stage_task("finetune_private")
evaluate = _stage_task("evaluate")
export = _stage_task("export")
