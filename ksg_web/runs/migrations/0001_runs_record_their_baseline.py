"""Every run records its baseline. Runs from before baselines existed were KnowledgeSG without an
evaluation stage: they get baseline "knowledgesg" and record that pipeline (the code then needs
no default for them; ksg_web.runs.pipeline.run_pipeline)."""
from django.db import migrations

# the KnowledgeSG pipeline those runs had: stages 1-5, no evaluation
PIPELINE_BEFORE_BASELINES = ["dp_finetune", "generate", "filter", "distill", "finetune_target"]


def baseline_record(apps, schema_editor):
    Job = apps.get_model("jobs", "Job")
    for run in Job.objects.filter(kind="run").iterator():
        if run.params.get("baseline"):
            continue
        run.params = {**run.params, "baseline": "knowledgesg", "pipeline": PIPELINE_BEFORE_BASELINES}
        run.save(update_fields=["params"])


class Migration(migrations.Migration):
    dependencies = [("jobs", "0009_job_kind_registry")]

    # forwards only matters; backwards leaves the recorded baseline (the code before this read the same)
    operations = [migrations.RunPython(baseline_record, migrations.RunPython.noop)]
