"""One whole run on the real embedded model (SmolLM2-135M) with the smallest sizes, from the CLI,
as the issue's acceptance describes: the ledger shows the stage-1 spend, the synthetic data has
no PII from the private file, and the target adapter loads with PEFT and answers a question."""
import json
import re
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from jobs.models import Job
from privacy.models import LedgerEntry, PrivateDataset
from privacy.pii import pii_find

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SMALLEST = ["dp_finetune.steps=2", "dp_finetune.logical_batch_size=8", "generate.num_instructions=6",
            "generate.max_new_tokens=32", "filter.relevance_threshold=0.0", "distill.max_new_tokens=40",
            "finetune_target.epochs=1", "finetune_target.logical_batch_size=4", "finetune_target.physical_batch_size=4",
            "finetune_target.max_length=96", "evaluate.max_records=16", "evaluate.max_length=64",
            "evaluate.reconstruction_targets=3", "evaluate.candidate_set_size=8", "evaluate.generation_records=2",
            "evaluate.max_new_tokens=16", "evaluate.canary_references=10", "evaluate.sequential_looks=1"]


def test_ksg_run_on_the_embedded_model(celery_session_worker, tmp_path, make_user, settings):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from synthesis.lm.generation import SamplingParams, TransformersBackend
    from synthesis.lm.loader import EMBEDDED_MODEL, embedded_model_dir

    settings.KSG_PRIVATE_DIR = tmp_path / "private"
    make_user("ada")
    demo = tmp_path / "clinic.jsonl"
    call_command("ksg_demo_data", "--domain", "medical", "--n", "60", "--seed", "2", "--out", str(demo))
    call_command("ksg_dataset_add", str(demo), "--name", "clinic", "--epsilon-limit", "10", "--owner", "ada", stdout=StringIO())
    out, progress = StringIO(), StringIO()
    call_command("ksg_run", "--dataset", "clinic", "--preset", "demo", "--wait", *[a for s in SMALLEST for a in ("--set", s)],
                 stdout=out, stderr=progress)

    text = progress.getvalue()
    summary = json.loads(out.getvalue())  # stdout is the JSON summary alone; the progress went to stderr
    assert summary["status"] == "succeeded", text[-3000:]
    assert 0 < summary["privacy"]["epsilon"] <= 4
    stage1 = Job.objects.get(kind="dp_finetune")
    assert list(LedgerEntry.objects.filter(job=stage1).values_list("kind", flat=True)) == ["reserve", "commit", "release"]
    assert re.search(r"dp_finetune +\[#+\.*\] 2/2 epsilon", text)
    # the server-readable report (aggregates only; the whole one stays in the client-only area)
    report = json.loads((Path(settings.KSG_ARTIFACT_DIR)
                         / Job.objects.get(kind="evaluate").artifacts.get(kind="report", area="server").path).read_text())
    assert 0.0 <= report["privacy"]["membership"]["loss"]["auc"] <= 1.0
    assert report["records"]["train"] == 16

    target = Job.objects.get(kind="finetune_target")
    synthetic = (Path(settings.KSG_ARTIFACT_DIR) / target.artifacts.get(kind="synthetic_data").path).read_text()
    private_text = (Path(settings.KSG_PRIVATE_DIR) / PrivateDataset.objects.get().path / "train.jsonl").read_text()
    private_pii = {span.text for span in pii_find(private_text) if span.kind in ("name", "email", "phone", "id")}
    leaked = sorted(value for value in private_pii if len(value) > 3 and value in synthetic)
    assert leaked == [], f"private PII in the synthetic data: {leaked[:10]}"
    assert not [span for span in pii_find(synthetic) if span.kind in ("name", "email", "phone", "id")]

    adapter_dir = Path(settings.KSG_ARTIFACT_DIR) / target.artifacts.get(kind="adapter").path
    base = AutoModelForCausalLM.from_pretrained(embedded_model_dir(cache_dir=settings.KSG_MODEL_CACHE))
    assert isinstance(PeftModel.from_pretrained(base, adapter_dir), PeftModel)
    backend = TransformersBackend.load(model_spec=EMBEDDED_MODEL, adapter_path=adapter_dir, cache_dir=settings.KSG_MODEL_CACHE)
    (answer,) = backend.generate([[{"role": "user", "content": "I have had a headache for two days. What should I do?"}]],
                                 SamplingParams(temperature=0.0, max_new_tokens=40))
    assert len(answer.text.split()) >= 5
