"""The issue's acceptance run, from the CLI, on the real embedded model (SmolLM2-135M): register a
demo medical dataset with epsilon 10, train with target epsilon 4, then a job asking for 8 is
refused before it starts. Slow: the first run converts the GGUF (about 20 s), then trains."""
import json
import re
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from jobs.models import Job
from privacy.models import LedgerEntry, PrivateDataset

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_cli_stage1_on_the_embedded_model(celery_session_worker, tmp_path, make_user):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from synthesis.lm.loader import EMBEDDED_MODEL, embedded_model_dir

    make_user("ada")
    demo = tmp_path / "clinic.jsonl"
    call_command("ksg_demo_data", "--domain", "medical", "--n", "120", "--seed", "1", "--out", str(demo))
    call_command("ksg_dataset_add", str(demo), "--name", "clinic", "--epsilon-limit", "10", "--owner", "ada",
                 stdout=StringIO())
    out, progress = StringIO(), StringIO()
    call_command("ksg_dp_finetune", "--dataset", "clinic", "--target-epsilon", "4", "--steps", "4",
                 "--logical-batch-size", "8", "--physical-batch-size", "8", "--max-length", "64",
                 stdout=out, stderr=progress)

    log = progress.getvalue()  # the progress goes to stderr, the result line alone to stdout
    assert re.fullmatch(r"job \d+ succeeded; adapter: \S+\n", out.getvalue()), out.getvalue()
    job = Job.objects.get(kind="dp_finetune")
    assert job.status == "succeeded", log
    assert len(re.findall(r"epsilon +step \d/4 +epsilon", log)) == 4
    kinds = list(LedgerEntry.objects.filter(job=job).values_list("kind", flat=True))
    assert kinds == ["reserve", "commit", "release"]
    adapter_dir = Path(settings.KSG_ARTIFACT_DIR) / job.artifacts.get(kind="adapter").path
    privacy = json.loads((adapter_dir / "privacy.json").read_text())
    assert 0 < privacy["epsilon"] <= 4 and privacy["steps"] == 4 and privacy["accountant"] == "prv"
    base = AutoModelForCausalLM.from_pretrained(embedded_model_dir(cache_dir=settings.KSG_MODEL_CACHE))
    PeftModel.from_pretrained(base, adapter_dir)
    assert job.params["base_model"] == EMBEDDED_MODEL

    with pytest.raises(CommandError, match=r"asks for epsilon 8\.000000 on dataset 'clinic'.*at most 6\.0"):
        call_command("ksg_dp_finetune", "--dataset", "clinic", "--target-epsilon", "8", stdout=StringIO())
    assert Job.objects.filter(kind="dp_finetune").count() == 1
    assert PrivateDataset.objects.get().budget.ledger.filter(kind="reserve").count() == 1
