"""Migration runs.0001: runs from before baselines existed record baseline and pipeline, so the
code needs no default for them."""
from importlib import import_module

import pytest
from django.apps import apps

from jobs.models import Job
from ksg_web.runs.pipeline import BASELINES, run_pipeline

migration = import_module("ksg_web.runs.migrations.0001_runs_record_their_baseline")


@pytest.mark.django_db
def test_a_run_from_before_baselines_records_knowledgesg_without_evaluation(make_user):
    owner = make_user("olive")
    old = Job.objects.create(kind="run", owner=owner, status="succeeded",
                             params={"preset": "demo", "stages": {"dp_finetune": {}}})
    current = Job.objects.create(kind="run", owner=owner, status="succeeded",
                                 params={"preset": "demo", "baseline": "dp_direct", "stages": {}})

    migration.baseline_record(apps, None)

    old.refresh_from_db()
    current.refresh_from_db()
    assert old.params["baseline"] == "knowledgesg" and old.params["stages"] == {"dp_finetune": {}}
    assert run_pipeline(old) == ("dp_finetune", "generate", "filter", "distill", "finetune_target")
    assert current.params == {"preset": "demo", "baseline": "dp_direct", "stages": {}}
    assert run_pipeline(current) == BASELINES["dp_direct"]
