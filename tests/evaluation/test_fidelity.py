"""Fidelity of the synthetic data to the private data (evaluation.fidelity): MAUVE and the k-NN
figures tell the same distribution from a different one, with intervals; too few texts give no
figure and a reason; the evaluate stage writes it for a model with synthetic data."""
import contextlib
import io
import json
import os
from pathlib import Path

import numpy as np
import prdc
import pytest
from sklearn.metrics import pairwise_distances

from evaluation import fidelity
from evaluation.fidelity import (FIGURES, MIN_TEXTS, fidelity_of_texts, fidelity_report, prdc_resampled,
                                 text_embeddings)
from ksg_web.runs.report_figures import FIDELITY_FIGURES
from privacy.demo_data import demo_records
from tests.support.tiny_model import tiny_model_dir

# embeddings as a language model's are: most of the spread in a few directions, a little noise
BASIS = np.random.default_rng(0).normal(size=(4, 64))


def cloud(n: int, *, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)) @ BASIS + 0.3 * rng.normal(size=(n, 64)) + shift


@pytest.fixture(scope="module")
def same_and_far():
    """25 "private" points against 40 of the same distribution and 40 of one shifted far away."""
    private = cloud(25, seed=1)
    return fidelity_report(private, cloud(40, seed=2)), fidelity_report(private, cloud(40, seed=2, shift=3.0))


def test_the_same_distribution_gives_mauve_near_1_and_high_coverage(same_and_far):
    same, _ = same_and_far
    assert same["problem"] is None and same["mauve"] >= 0.8
    assert same["coverage"] >= 0.8 and same["precision"] >= 0.7 and same["recall"] >= 0.7
    assert 0.6 <= same["density"] <= 1.5
    for name in FIGURES:
        interval = same[f"{name}_interval"]
        assert interval["low"] <= interval["high"] and interval["resamples"] == 200
        assert (interval["n_private"], interval["n_synthetic"], interval["n"]) == (25, 40, 65)
    assert same["mauve_buckets"] == 5 and same["nearest_k"] == 3  # 25 // 5 buckets


def test_the_same_texts_on_both_sides_give_every_figure_1():
    points = cloud(20, seed=5)
    report = fidelity_report(points, points.copy())
    assert report["mauve"] == pytest.approx(1.0)
    assert {name: report[name] for name in fidelity.PRDC_FIGURES} == {
        "precision": 1.0, "recall": 1.0, "density": 1.0, "coverage": 1.0}


def test_separated_distributions_give_clearly_lower_mauve_and_no_coverage(same_and_far):
    same, far = same_and_far
    assert far["mauve"] <= 0.1 and far["mauve_interval"]["high"] < same["mauve_interval"]["low"]
    assert far["coverage"] == far["precision"] == far["recall"] == far["density"] == 0.0
    assert far["coverage_interval"]["high"] < same["coverage_interval"]["low"]


def test_the_report_is_seeded(same_and_far):
    same, _ = same_and_far
    assert fidelity_report(cloud(25, seed=1), cloud(40, seed=2)) == same


def test_too_few_texts_give_no_figure_and_say_why():
    report = fidelity_report(cloud(MIN_TEXTS - 1, seed=1), cloud(40, seed=2))
    assert all(report[name] is None and report[f"{name}_interval"] is None for name in FIGURES)
    assert report["problem"].startswith("too few texts to compare: 9 distinct held-out private and 40 distinct")
    assert f"at least {MIN_TEXTS} on each side" in report["problem"]
    # 30 synthetic instructions that are 5 texts repeated are 5 texts
    repeated = fidelity_report(cloud(25, seed=1), np.repeat(cloud(5, seed=2), 6, axis=0))
    assert repeated["mauve"] is None and "and 5 distinct synthetic" in repeated["problem"]
    assert repeated["n_synthetic"] == 30


def test_the_resampled_figures_with_every_record_once_are_prdc_itself():
    private, synthetic = cloud(25, seed=3), cloud(40, seed=4, shift=0.5)
    with contextlib.redirect_stdout(io.StringIO()):
        expected = prdc.compute_prdc(real_features=private, fake_features=synthetic, nearest_k=3)
    distances = {"private": pairwise_distances(private), "synthetic": pairwise_distances(synthetic),
                 "cross": pairwise_distances(private, synthetic)}
    assert prdc_resampled(distances, np.arange(25), np.arange(40)) == pytest.approx(expected)


def test_a_record_drawn_several_times_is_not_its_own_neighbour():
    """Each private point has its exact twin among the synthetic ones: every ball covers its
    twin, also the ball of a record the bootstrap drew four times (as its own neighbour, its
    ball would have radius 0 and cover nothing)."""
    points = cloud(12, seed=6)
    distances = {name: pairwise_distances(points) for name in ("private", "synthetic", "cross")}
    drawn = np.array([0, 0, 0, 0, *range(1, 12)])
    assert prdc_resampled(distances, drawn, drawn)["coverage"] == 1.0


def test_faiss_small_sample_warnings_stay_out_of_the_log_and_other_lines_do_not(capfd):
    with fidelity._faiss_warnings_dropped():
        os.write(2, b"WARNING clustering 65 points to 5 centroids: please provide at least 195 training points\n")
        os.write(2, b"another thread's line\n")
    fidelity_report(cloud(25, seed=1), cloud(40, seed=2))
    assert capfd.readouterr().err == "another thread's line\n"


def test_the_report_page_knows_every_figure():
    assert FIDELITY_FIGURES == FIGURES


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny model whose vocabulary covers medical and finance demo instructions."""
    texts = {domain: [r["instruction"] for r in demo_records(domain=domain, n=30, seed=seed)]
             for domain, seed in (("medical", 1), ("finance", 3))}
    texts["medical, other patients"] = [r["instruction"] for r in demo_records(domain="medical", n=30, seed=2)]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = tiny_model_dir(tmp_path_factory.mktemp("tiny"), [text for group in texts.values() for text in group])
    return AutoModelForCausalLM.from_pretrained(directory).eval(), AutoTokenizer.from_pretrained(directory), texts


def test_a_text_embedding_does_not_depend_on_its_batch(tiny):
    model, tokenizer, texts = tiny
    batch = texts["medical"][:7]
    together = text_embeddings(model, tokenizer, batch, max_length=128, batch_size=4)
    alone = np.stack([text_embeddings(model, tokenizer, [text], max_length=128)[0] for text in batch])
    assert together.shape == (7, model.config.hidden_size) and together.dtype == np.float32
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert len({tuple(row) for row in together.round(4)}) == 7


def test_medical_texts_are_told_from_finance_texts(tiny):
    model, tokenizer, texts = tiny
    same = fidelity_of_texts(model, tokenizer, texts["medical"], texts["medical, other patients"],
                             encoder="tiny", max_length=128)
    other = fidelity_of_texts(model, tokenizer, texts["medical"], texts["finance"], encoder="tiny", max_length=128)
    assert same["encoder"] == "tiny: mean-pooled last hidden state (fp32)"
    assert (same["n_private"], same["n_synthetic"]) == (30, 30)
    assert same["coverage"] >= 0.6 and other["coverage"] <= 0.2
    assert other["coverage_interval"]["high"] < same["coverage_interval"]["low"]
    assert same["precision"] - other["precision"] >= 0.5
    assert same["mauve"] >= other["mauve"]  # a random tiny model's embeddings are a weak ground for MAUVE


def test_personal_details_are_masked_on_both_sides_before_embedding(tiny, monkeypatch):
    from evaluation import fidelity

    model, tokenizer, texts = tiny
    embedded = []

    def recording(model, tokenizer, batch, *, max_length):
        embedded.extend(batch)
        return text_embeddings(model, tokenizer, batch, max_length=max_length)

    monkeypatch.setattr(fidelity, "text_embeddings", recording)
    named = [f"Hello doctor, my name is {name} Vandermeer and my MRN is 1076{index:04d}. {text}"
             for index, (name, text) in enumerate(zip(["Ysolde", "Tarquin", "Saoirse"] * 10, texts["medical"]))]
    report = fidelity_of_texts(model, tokenizer, named, texts["medical, other patients"], encoder="tiny", max_length=128)

    assert report["pii"] == fidelity.PII_MASKING and report["mauve"] is not None
    assert not any(secret in text for text in embedded for secret in ("Ysolde", "Vandermeer", "1076"))
    assert all("my name is [NAME]" in text for text in embedded[:30])  # the private side, embedded first


def test_empty_texts_are_left_out_and_too_few_are_said_so(tiny):
    model, tokenizer, texts = tiny
    report = fidelity_of_texts(model, tokenizer, texts["medical"][:12], ["", "  ", None, *texts["finance"][:8]],
                               encoder="tiny", max_length=128)
    assert report["mauve"] is None and report["n_synthetic"] == 8 and "8 distinct synthetic" in report["problem"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_evaluation_of_a_model_with_synthetic_data_reports_its_fidelity(tmp_path, settings, make_user):
    """The evaluate stage: the synthetic instructions against the held-out split's, embedded by
    the base model, in the whole report and in the server-readable aggregates."""
    from django.conf import settings as django_settings
    from transformers import AutoModelForCausalLM

    from evaluation.stage import evaluate_run
    from jobs.kinds import params_as_dict, params_parse
    from jobs.models import Job
    from jobs.runner import job_execute
    from jobs.services import artifact_record
    from privacy.dp.train import DPTrainConfig, lora_wrap
    from privacy.selectors import dataset_records
    from tests.support.datasets import register_demo_dataset

    settings.KSG_PRIVATE_DIR = tmp_path / "private"
    owner = make_user("ada")
    dataset, records = register_demo_dataset(tmp_path, owner, n=40, seed=4, heldout_fraction=0.3)
    synthetic = [{"instruction": r["instruction"], "response": r["response"]}
                 for r in demo_records(domain="medical", n=14, seed=11)]
    model_dir = tiny_model_dir(tmp_path / "tiny", [r["instruction"] + " " + r["response"] for r in records + synthetic])
    holder = Job.objects.create(kind="finetune_target", owner=owner, dataset=dataset, status="succeeded")
    artifacts = Path(django_settings.KSG_ARTIFACT_DIR) / f"fidelity-test-{holder.pk}"
    config = DPTrainConfig(target_epsilon=1.0, delta=0.5, dp=False, steps=1, epochs=None, lora_rank=4)
    lora_wrap(AutoModelForCausalLM.from_pretrained(model_dir), config).save_pretrained(artifacts / "adapter")
    (artifacts / "synthetic_pairs.jsonl").write_text("".join(json.dumps(pair) + "\n" for pair in synthetic))
    adapter = artifact_record(job_id=holder.pk, kind="adapter", path=artifacts / "adapter")
    pairs = artifact_record(job_id=holder.pk, kind="synthetic_data", path=artifacts / "synthetic_pairs.jsonl")
    params = params_as_dict(params_parse("evaluate", {
        "adapter_artifact": adapter.pk, "synthetic_artifact": pairs.pk, "base_model": str(model_dir),
        "professional_model": str(model_dir), "max_length": 96, "reconstruction_targets": 2, "candidate_set_size": 5,
        "generation_records": 1, "max_new_tokens": 4}))
    job = Job.objects.create(kind="evaluate", owner=owner, dataset=dataset, params=params, celery_task_id="e")

    assert job_execute(job_id=job.pk, celery_task_id="e", stage=evaluate_run) == "succeeded", \
        Job.objects.get(pk=job.pk).error

    whole = job.artifacts.get(kind="report", area="client")
    report = json.loads((Path(django_settings.KSG_PRIVATE_DIR) / "artifacts" / whole.path).read_text())
    result = report["utility"]["fidelity"]
    heldout = len(dataset_records(dataset=dataset, split="heldout"))
    assert heldout >= MIN_TEXTS and (result["n_private"], result["n_synthetic"]) == (heldout, 14)
    assert result["problem"] is None and result["encoder"] == f"{model_dir}: mean-pooled last hidden state (fp32)"
    assert all(0 <= result[name] <= 1 for name in FIGURES if name != "density") and result["density"] >= 0
    assert result["mauve_interval"]["n_synthetic"] == 14 and result["coverage_interval"]["resamples"] == 200
    server = job.artifacts.get(kind="report", area="server")
    aggregates = json.loads((Path(django_settings.KSG_ARTIFACT_DIR) / server.path).read_text())
    assert aggregates["utility"]["fidelity"] == result  # figures only: nothing private in them
