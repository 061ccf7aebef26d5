"""The evaluate stage on a tiny model: a report with privacy and utility figures, side by side
with the base model, as an artifact and metric events; and who may ask for one."""
import json
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from ksg_web.runs.evaluate import evaluate_submit
from evaluation.stage import evaluate_run, judged_questions
from evaluation.utility import JUDGE_MIN_CONSISTENCY
from jobs.kinds import JobParamsError, params_as_dict, params_parse
from jobs.models import Job
from jobs.runner import job_execute
from jobs.services import artifact_record
from privacy.dp.train import DPTrainConfig, dp_lora_train, examples_tokenize, lora_wrap
from privacy.selectors import dataset_records
from tests.support.datasets import register_demo_dataset
from tests.support.tiny_model import tiny_model_dir

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture()
def trained(tmp_path, settings, make_user):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    settings.KSG_PRIVATE_DIR = tmp_path / "private"
    owner = make_user("ada")
    dataset, records = register_demo_dataset(tmp_path, owner, n=24, seed=9, heldout_fraction=0.25, audit_canaries=12)
    model_dir = tiny_model_dir(tmp_path / "tiny", [r["instruction"] + " " + r["response"] for r in records])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    config = DPTrainConfig(target_epsilon=1.0, delta=0.5, dp=False, steps=20, epochs=None, learning_rate=0.01,
                           logical_batch_size=6, physical_batch_size=6, max_length=96, lora_rank=4)
    model = lora_wrap(AutoModelForCausalLM.from_pretrained(model_dir), config)
    train = dataset_records(dataset=dataset, split="train")
    dp_lora_train(model, examples_tokenize(train, tokenizer, max_length=96), config, pad_id=tokenizer.pad_token_id)
    holder = Job.objects.create(kind="finetune_target", owner=owner, params={}, celery_task_id="x")
    adapter_dir = Path(django_settings.KSG_ARTIFACT_DIR) / f"eval-test-{holder.pk}" / "adapter"
    model.save_pretrained(adapter_dir)
    adapter = artifact_record(job_id=holder.pk, kind="adapter", path=adapter_dir)
    return owner, dataset, model_dir, adapter


def test_evaluation_reports_privacy_and_utility_against_the_base_model(trained, monkeypatch):
    from synthesis.lm.generation import TransformersBackend

    owner, dataset, model_dir, adapter = trained
    generate, generated = TransformersBackend.generate, []

    def counted(self, prompts, sampling, **options):
        generated.append(len(prompts))
        return generate(self, prompts, sampling, **options)

    monkeypatch.setattr(TransformersBackend, "generate", counted)
    dp_holder = Job.objects.create(kind="dp_finetune", owner=owner, params={}, celery_task_id="y")
    dp_adapter = artifact_record(job_id=dp_holder.pk, kind="adapter", path=Path(django_settings.KSG_ARTIFACT_DIR) / adapter.path)
    params = params_as_dict(params_parse("evaluate", {
        "adapter_artifact": adapter.pk, "dp_adapter_artifact": dp_adapter.pk,
        "base_model": str(model_dir), "professional_model": str(model_dir),
        "max_length": 96, "reconstruction_targets": 5, "candidate_set_size": 20, "generation_records": 8,
        "max_new_tokens": 8, "sequential_looks": 3}))
    job = Job.objects.create(kind="evaluate", owner=owner, dataset=dataset, params=params, celery_task_id="e")

    assert job_execute(job_id=job.pk, celery_task_id="e", stage=evaluate_run) == "succeeded", Job.objects.get(pk=job.pk).error

    whole = job.artifacts.get(kind="report", area="client")
    report = json.loads((Path(django_settings.KSG_PRIVATE_DIR) / "artifacts" / whole.path).read_text())
    membership = report["privacy"]["membership"]
    audited = sum(record.get("audit", False) for record in dataset_records(dataset=dataset, split="train"))
    # membership samples in looks up to every training and held-out record: the split of the look it stopped at
    assert 0 <= membership["loss"]["auc"] <= 1 and membership["sample"]["members_available"] == dataset.train_count - audited
    assert membership["loss"]["n_members"] + membership["loss"]["n_nonmembers"] == membership["sample"]["n"]
    assert membership["sample"]["cap"] == dataset.train_count - audited + dataset.heldout_count
    # the one-run audit of the model and of the stage-1 adapter beside it, on all 12 audit canaries
    audit = report["privacy"]["audit"]
    assert audit["canaries"] == 12 and audit["model"]["m"] == 12 and audit["model"]["n_in"] == audited
    assert audit["dp_adapter"]["m"] == 12 and audit["delta"] == pytest.approx(min(1e-5, dataset.budget.delta))
    assert {finding["subject"] for finding in report["verdict"]} >= {"guarantee", "name reconstruction"}
    reconstruction = report["privacy"]["reconstruction"]
    assert reconstruction["random_guess_rate"] == pytest.approx(1 / 20) and reconstruction["n_targets"] >= 1
    utility = report["utility"]
    # The adapter was trained on the training split: it fits the private data better than the base.
    assert utility["heldout_loss"]["target"]["loss"] != utility["heldout_loss"]["base"]["loss"]
    # 8 questions asked for, 6 held out: the judge's cap is 6, sampled in looks of 2, 3 and 6 questions until
    # its consistency decides; the report says how many it used and why it stopped
    judged, sample = utility["win_rate"]["n"], utility["win_rate"]["sample"]
    assert 0 <= utility["rouge_l"]["target"]["mean"] <= 1 and judged == sample["n"] in (2, 3, 6)
    assert sample["cap"] == 6 and sample["sizes"] == [2, 3, 6] and sample["reason"].startswith(
        f"stopped at {judged} of 6 questions" if sample["decision"] != "undecided" else "ran to the cap, 6 questions")
    assert utility["questions"] | {"note": None} == {"requested": 8, "held_out": 6, "used": 6, "judged": judged,
                                                     "note": None}
    assert "holds out only 6 records" in utility["questions"]["note"]
    # each model answers each of the 6 questions once: ROUGE-L scores all of them (it measures the models), the
    # judge reads the first `judged` of the same answers
    assert sum(generated) == 2 * 6 and utility["rouge_l"]["target"]["n"] == 6
    # the attacks too give their sample and why it stopped, and the verdict says it
    for sampled in (membership["sample"], report["privacy"]["reconstruction"]["sample"]):
        assert sampled["n"] <= sampled["cap"] and sampled["reason"]
    assert any("Sample: " in finding["text"] for finding in report["verdict"])
    # the judge saw each pair in both orders; its consistency is reported, a win-rate only if informative
    assert all(len(verdict["orders"]) == 2 for verdict in utility["win_rate"]["verdicts"])
    assert (utility["win_rate"]["win_rate"] is None) == (utility["win_rate"]["consistency"] < JUDGE_MIN_CONSISTENCY)
    assert utility["ifd"]["private"]["n"] == dataset.train_count - audited
    # no synthetic data given: fidelity says so instead of a figure (tests/evaluation/test_fidelity.py measures it)
    assert utility["fidelity"]["mauve"] is None and utility["fidelity"]["problem"].startswith("not applicable")
    metrics = [event.payload for event in job.events.filter(kind="metric").order_by("seq")]
    assert metrics[0]["membership_auc"] == membership["loss"]["auc"] and "win_rate" in metrics[1]
    assert metrics[1]["judge_consistency"] == utility["win_rate"]["consistency"]
    # the excerpts stay on the private volume; the server-readable copy has every figure and no record
    assert reconstruction["examples"] and utility["rouge_l"]["target"]["examples"] and utility["win_rate"]["verdicts"]
    server = job.artifacts.get(kind="report", area="server")
    aggregates = json.loads((Path(django_settings.KSG_ARTIFACT_DIR) / server.path).read_text())
    assert aggregates["privacy"]["reconstruction"]["examples"] == [] and "verdicts" not in aggregates["utility"]["win_rate"]
    assert aggregates["utility"]["rouge_l"]["target"]["examples"] == [] and "scores" not in aggregates["utility"]["rouge_l"]["target"]
    assert aggregates["privacy"]["membership"] == membership and aggregates["utility"]["ifd"] == utility["ifd"]
    assert report["leak_scan"]["findings"] == [] and aggregates["leak_scan"]["findings"] == []


def test_an_evaluation_of_an_unfinished_run_is_refused(trained):
    owner, dataset, *_ = trained
    run = Job.objects.create(kind="run", owner=owner, dataset=dataset, status="running", params={"stages": {}})
    with pytest.raises(JobParamsError, match="not a succeeded run"):
        evaluate_submit(owner=owner, run=run)


def test_judged_questions_are_drawn_without_replacement_from_the_whole_held_out_split():
    heldout = [{"instruction": f"question {i}", "response": f"answer {i}"} for i in range(100)]
    drawn = judged_questions(heldout, count=64, seed=0)
    assert len(drawn) == 64 and len({r["instruction"] for r in drawn}) == 64  # no question twice
    assert drawn == judged_questions(heldout, count=64, seed=0) != judged_questions(heldout, count=64, seed=1)
    assert drawn != heldout[:64]  # drawn from all 100, not the first 64
    few = judged_questions(heldout[:30], count=64, seed=0)
    assert sorted(r["instruction"] for r in few) == sorted(r["instruction"] for r in heldout[:30])
