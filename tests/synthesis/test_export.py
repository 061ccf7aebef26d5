"""Exporting a run's model: the evaluated adapter merged into its base model, loadable with
AutoModelForCausalLM.from_pretrained and computing what base + adapter computes, with a model
card stating the ledger's epsilon and the dataset's hash and no private record; who may export
and when."""
import json
from pathlib import Path

import pytest
import torch
from django.conf import settings as django_settings
from django.test import Client

from jobs.models import Artifact, Job
from ksg_web.runs.pipeline import run_export, run_submit
from jobs.services import JobStateError
from jobs.tokens import api_token_create
from privacy.demo_data import demo_records
from privacy.models import LedgerEntry
from privacy.services import AccessRefused
from ksg_web.runs.export import card_facts, model_card
from tests.synthesis.test_baselines import EVALUATE, clinic  # noqa: F401 (the fixture)
from tests.synthesis.test_pipeline import finished, tiny_stages

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture()
def dp_run(celery_session_worker, clinic):  # noqa: F811
    owner, dataset, model_dir = clinic
    run = run_submit(owner=owner, dataset=dataset, stages=tiny_stages(model_dir, **EVALUATE), preset="demo",
                     baseline="dp_direct")
    run = finished(run.pk)
    assert run.status == "succeeded", run.error
    return owner, dataset, model_dir, run


@pytest.mark.slow
def test_the_exported_model_loads_with_transformers_and_computes_what_base_plus_adapter_computes(dp_run):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    owner, dataset, model_dir, run = dp_run
    export = finished(run_export(run=run, actor=owner).pk)
    assert export.status == "succeeded", export.error
    model_path = Path(django_settings.KSG_ARTIFACT_DIR) / export.artifacts.get(kind="model").path

    merged = AutoModelForCausalLM.from_pretrained(model_path).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    adapter = Artifact.objects.get(pk=run.children.get(kind="evaluate").params["adapter_artifact"])
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir),
                                          str(Path(django_settings.KSG_ARTIFACT_DIR) / adapter.path)).eval()
    ids = tokenizer("What should I do about a headache ?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, reference(ids).logits, atol=1e-4)
    assert not any(name.startswith("adapter_") for name in {p.name for p in model_path.iterdir()})  # merged, not LoRA

    card = (model_path / "README.md").read_text()
    committed = LedgerEntry.objects.get(job=run.children.get(kind="dp_finetune"), kind="commit")
    assert f"epsilon = {float(committed.epsilon)}" in card and "differential privacy" in card
    assert dataset.sha256 in card and dataset.name in card
    facts = json.loads((model_path / "privacy.json").read_text())
    assert facts["privacy"]["epsilon"] == float(committed.epsilon) and facts["dataset"]["sha256"] == dataset.sha256
    assert facts["evaluation"]["membership_auc_loss"] is not None
    everything = card + json.dumps(facts)
    names = {word for r in demo_records(domain="medical", n=40, seed=5) for word in r["instruction"].split()[3:5]}
    assert not any(name.strip(".,") in everything for name in names if len(name) > 4 and name[0].isupper())

    # once is enough: asking again returns the same export; the download is the merged model
    assert run_export(run=run, actor=owner).pk == export.pk
    client = Client()
    client.force_login(owner)
    response = client.get(f"/jobs/artifacts/{export.artifacts.get(kind='model').pk}/download/")
    assert response.status_code == 200 and response["Content-Disposition"].endswith('merged_model.zip"')


@pytest.mark.slow
def test_who_may_export_and_when(dp_run, make_user):
    from privacy.services import user_create

    owner, dataset, _, run = dp_run
    officer = user_create(username="olga", role="compliance_officer", password="a-long-password-1")
    with pytest.raises(AccessRefused, match="not export its model"):
        run_export(run=run, actor=officer)  # sees every run, uses no dataset
    with pytest.raises(JobStateError, match="not a run"):
        run_export(run=run.children.get(kind="evaluate"), actor=owner)
    unfinished = Job.objects.create(kind="run", owner=owner, dataset=dataset, params={}, celery_task_id="x",
                                    status="failed")
    with pytest.raises(JobStateError, match="only a succeeded run"):
        run_export(run=unfinished, actor=owner)

    _, key = api_token_create(user=owner, name="export")
    api = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    response = api.post(f"/api/runs/{unfinished.pk}/export")
    assert response.status_code == 409 and "only a succeeded run" in response.json()["detail"]
    response = api.post(f"/api/runs/{run.pk}/export")
    assert response.status_code == 201 and response.json()["kind"] == "export"
    assert api.post(f"/api/runs/{run.pk}/export").json()["id"] == response.json()["id"]
    outsider = Client(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=make_user('mallory'), name='m')[1]}")
    assert outsider.post(f"/api/runs/{run.pk}/export").status_code == 404
    assert finished(response.json()["id"]).status == "succeeded"

    # a 4-bit GPTQ copy needs CUDA and the gpu extra: here the job says so, keeping the merged model
    quantized = finished(run_export(run=run, actor=owner, quantize="gptq").pk)
    assert quantized.status == "failed" and "needs a CUDA GPU and the gpu extra" in quantized.error
    assert quantized.artifacts.filter(kind="model", path__endswith="merged_model").exists()


def _facts(**privacy) -> dict:
    privacy.setdefault("epsilon_unit", "per record")  # the report states every dataset's unit
    report = {"run": {"id": 3, "baseline": privacy.pop("baseline", "knowledgesg"), "baseline_label": "KnowledgeSG"},
              "dataset": {"name": "clinic", "sha256": "ab" * 32, "train_records": 270}, "privacy": privacy,
              "evaluation": None}
    return card_facts(report, base_model="smollm2-135m-instruct", adapter_artifact=9)


def test_the_card_states_each_kind_of_guarantee_and_refuses_to_invent_one():
    per_record = model_card(_facts(epsilon=3.98, delta=1e-3, accountant="prv", epsilon_unit="per record"))
    assert "(epsilon = 3.98, delta = 0.001)-differential privacy per record**: it protects each training record" in (
        per_record)
    per_patient = model_card(_facts(epsilon=3.98, delta=1e-3, accountant="prv", epsilon_unit="per patient_id"))
    assert ("differential privacy per patient_id**: it protects each person (patient_id) with all their training "
            "records together") in per_patient
    assert "No differential-privacy guarantee" in model_card(_facts(unbounded=True, dp=False, baseline="nonprivate"))
    assert "No private record was used" in model_card(_facts(epsilon=0.0, baseline="self_instruct"))
    with pytest.raises(ValueError, match="no epsilon committed"):
        model_card(_facts(epsilon=None))


def test_the_card_and_privacy_json_carry_the_mechanism_and_say_the_dataset_size_is_public():
    facts = _facts(epsilon=3.98, delta=1e-3, accountant="prv", epsilon_unit="per record", mechanism={
        "sample_rate": 0.0593, "steps": 40, "noise_multiplier": 1.1, "max_grad_norm": 1.0, "accountant": "prv"})
    card = model_card(facts)
    assert facts["mechanism"] == {"sample_rate": 0.0593, "steps": 40, "noise_multiplier": 1.1, "max_grad_norm": 1.0}
    assert facts["dataset"]["size"].startswith("public") and facts["dataset"]["train_records"] == 270
    assert "40 steps at Poisson sample rate 0.0593 of records, each record's gradient clipped to norm 1" in card
    assert "270 training records" in card
    per_patient = model_card(_facts(epsilon=3.98, delta=1e-3, accountant="prv", epsilon_unit="per patient_id",
                                    mechanism={"sample_rate": 0.3, "steps": 4, "noise_multiplier": 1.9,
                                               "max_grad_norm": 1.0, "unit": "patient_id", "max_records_per_unit": 4}))
    assert ("Poisson sample rate 0.3 of persons, at most 4 records each, each person's summed gradient clipped to "
            "norm 1") in per_patient
    assert "size is treated as public" in card
