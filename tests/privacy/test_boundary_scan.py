"""The privacy boundary holds for every file: after a full KnowledgeSG run, each baseline and an
export, nothing the server side can read (the artifact directory, the model cache, the database)
holds a private record's text: no 8-word span of one, no identifying value planted in one. The
scan walks every file, so a new file cannot slip past it; a planted span shows that it fails."""
import json
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from jobs.models import Job
from ksg_web.runs.pipeline import BASELINES, run_export, run_submit
from privacy.demo_data import demo_records_planted
from privacy.leak_scan import span_mask, text_words
from privacy.selectors import dataset_records
from tests.support.boundary import boundary_check, dataset_private_index, server_readable_roots
from tests.support.datasets import register_demo_dataset
from tests.synthesis.test_baselines import EVALUATE
from tests.synthesis.test_pipeline import finished, public_tiny_model, tiny_stages

pytestmark = pytest.mark.django_db(transaction=True)

SMALL = {**EVALUATE, "dp_finetune.steps": 2, "generate.num_instructions": 6, "finetune_target.epochs": 1.0}


@pytest.fixture()
def clinic(tmp_path, settings, make_user):
    """A demo clinic dataset (with canaries), and the server-readable directories of this test alone."""
    settings.KSG_PRIVATE_DIR = tmp_path / "private"
    settings.KSG_ARTIFACT_DIR = tmp_path / "artifacts"
    settings.KSG_MODEL_CACHE = tmp_path / "models"
    settings.KSG_ARTIFACT_DIR.mkdir()
    settings.KSG_SAMPLE_EVENT_SECONDS = 0
    owner = make_user("ada")
    dataset, _ = register_demo_dataset(tmp_path, owner, n=40, seed=5, canaries=2, allow_nonprivate_baselines=True)
    # the base model sits in the model cache, as a downloaded one would: it is scanned too
    return owner, dataset, public_tiny_model(settings.KSG_MODEL_CACHE / "tiny-public")


def test_no_private_text_lands_where_the_server_side_reads_after_every_baseline_and_an_export(
        celery_session_worker, clinic):
    owner, dataset, model_dir = clinic
    stages = tiny_stages(model_dir, **SMALL)
    runs = [run_submit(owner=owner, dataset=dataset, stages=stages, preset="demo", baseline=baseline)
            for baseline in BASELINES]
    runs = [finished(run.pk) for run in runs]
    assert [run.status for run in runs] == ["succeeded"] * len(BASELINES), [run.error for run in runs]
    knowledgesg = next(run for run in runs if run.params["baseline"] == "knowledgesg")
    assert finished(run_export(run=knowledgesg, actor=owner).pk).status == "succeeded"

    planted = demo_records_planted(domain="medical", n=40, seed=5)
    index = dataset_private_index(dataset, planted=planted)
    assert len(index.spans) > 1000 and len(index.values) > 40  # it does know the records and the names

    files = boundary_check(index)

    assert files > 50  # adapters, synthetic data, reports, the merged model and the model cache
    # what quotes records was written, on the private side: the whole evaluation reports and the
    # non-private adapters
    private_artifacts = Path(django_settings.KSG_PRIVATE_DIR) / "artifacts"
    whole = [json.loads(path.read_text()) for path in private_artifacts.glob("job-*/evaluation_records.json")]
    assert len(whole) == len(BASELINES) and all(report["privacy"]["reconstruction"]["examples"] for report in whole)
    assert all(report["leak_scan"]["files"] > 0 for report in whole
               if report["model"]["baseline"] not in ("nonprivate", "scrubbed"))  # those write client-only files
    assert len(list(private_artifacts.glob("job-*/private_adapter"))) == 2
    # the whole report is what used to sit in the artifact directory: the scan would have caught it
    assert {finding.kind for finding in index.scan(json.dumps(whole[0]))} == {"span", "identifier"}

    # a private span planted in any server-readable file is found, naming the file and the record
    heldout = dataset_records(dataset=dataset, split="heldout")
    words = heldout[1]["response"].split()
    planted_file = Path(django_settings.KSG_ARTIFACT_DIR) / "job-999" / "notes.txt"
    planted_file.parent.mkdir()
    planted_file.write_text("summary: " + json.dumps(" ".join(words[2:12]).upper()) + " (end)")
    with pytest.raises(AssertionError, match=r"job-999/notes\.txt: span of private record heldout\[1\]"):
        boundary_check(index)
    planted_file.unlink()
    # an identifying value alone (a full name), inside a binary file in the model cache
    full_name = next(value for _, values in planted for value in values["name"] if " " in value)
    weights = Path(django_settings.KSG_MODEL_CACHE) / "tiny-public" / "extra.bin"
    weights.write_bytes(b"\x00\x93\xff" * 100 + full_name.encode() + b"\x00\x01" * 100)
    with pytest.raises(AssertionError) as failure:
        boundary_check(index, server_readable_roots())
    assert "extra.bin: identifier of private record" in str(failure.value)
    assert span_mask(full_name).lower() in str(failure.value).lower() and full_name not in str(failure.value)


def test_a_run_whose_synthetic_data_holds_a_private_span_reports_it_masked(tmp_path, settings, make_user):
    """The evaluate stage scans the run's server-readable files: a verbatim private span in the
    synthetic data (the filter should have caught it) is reported in the run, masked."""
    from jobs.runner import JobContext
    from jobs.services import artifact_record
    from evaluation.stage import _leak_scan_report, leak_scan_run

    settings.KSG_PRIVATE_DIR = tmp_path / "private"
    settings.KSG_ARTIFACT_DIR = tmp_path / "artifacts"
    owner = make_user("ada")
    dataset, _ = register_demo_dataset(tmp_path, owner, n=20, seed=3)
    record = dataset_records(dataset=dataset, split="train")[4]
    span = " ".join(record["instruction"].split()[:9])
    run = Job.objects.create(kind="run", owner=owner, dataset=dataset, params={"baseline": "knowledgesg"})
    distill = Job.objects.create(kind="distill", owner=owner, parent=run, params={}, celery_task_id="d")
    pairs = Path(settings.KSG_ARTIFACT_DIR) / f"job-{distill.pk}" / "synthetic_pairs.jsonl"
    pairs.parent.mkdir(parents=True)
    pairs.write_text(json.dumps({"instruction": "How do I sleep better?", "response": "Try this."}) + "\n"
                     + json.dumps({"instruction": span, "response": "Rest."}) + "\n")
    synthetic = artifact_record(job_id=distill.pk, kind="synthetic_data", path=pairs)
    evaluate = Job.objects.create(kind="evaluate", owner=owner, parent=run, dataset=dataset, celery_task_id="e",
                                  params={"synthetic_artifact": synthetic.pk}, attempts=1)

    scan = leak_scan_run(evaluate, synthetic_artifact=synthetic.pk)
    _leak_scan_report(JobContext(job=evaluate), evaluate, scan)

    assert scan["files"] == 1 and {f["record"] for f in scan["findings"] if f["kind"] == "span"} == {"train[4]"}
    message = run.events.get(kind="log").payload["message"]
    assert f"job-{distill.pk}/synthetic_pairs.jsonl" in message and span_mask(" ".join(text_words(span)[:8])) in message
    assert span not in message and " ".join(span.split()[1:4]) not in message


def test_a_client_only_artifact_downloads_only_for_readers_of_the_records_and_server_stages_refuse_it(
        tmp_path, settings, make_user, client):
    from jobs.runner import PrivacyBoundaryError, server_boundary_check
    from jobs.services import artifact_record
    from privacy.services import dataset_grant

    settings.KSG_PRIVATE_DIR = tmp_path / "private"
    settings.KSG_ARTIFACT_DIR = tmp_path / "artifacts"
    owner, colleague = make_user("ada"), make_user("bob")
    dataset, _ = register_demo_dataset(tmp_path, owner, n=12, seed=2)
    dataset_grant(dataset=dataset, actor=owner, user=colleague, can_read_records=False)
    run = Job.objects.create(kind="run", owner=owner, dataset=dataset, status="succeeded", params={"baseline": "dp_direct"})
    job = Job.objects.create(kind="evaluate", owner=owner, dataset=dataset, params={}, celery_task_id="e", parent=run)
    whole = Path(settings.KSG_PRIVATE_DIR) / "artifacts" / f"job-{job.pk}" / "evaluation_records.json"
    whole.parent.mkdir(parents=True)
    whole.write_text('{"examples": ["a private excerpt"]}')
    artifact = artifact_record(job_id=job.pk, kind="report", path=whole)
    assert artifact.area == "client" and artifact.path == f"job-{job.pk}/evaluation_records.json"

    client.force_login(colleague)  # may use the dataset, may not read its records
    assert client.get(f"/jobs/artifacts/{artifact.pk}/download/").status_code == 404
    assert f"/jobs/artifacts/{artifact.pk}/download/" not in client.get(f"/jobs/{job.pk}/").content.decode()
    for page in (f"/jobs/{run.pk}/", f"/jobs/{run.pk}/timeline/"):  # the run's stage timeline lists it only to readers
        assert f"/jobs/artifacts/{artifact.pk}/download/" not in client.get(page).content.decode(), page
    client.force_login(owner)
    assert f"/jobs/artifacts/{artifact.pk}/download/" in client.get(f"/jobs/{run.pk}/timeline/").content.decode()
    assert b"a private excerpt" in b"".join(client.get(f"/jobs/artifacts/{artifact.pk}/download/").streaming_content)

    export = Job.objects.create(kind="export", owner=owner, params={"adapter_artifact": artifact.pk}, celery_task_id="x")
    with pytest.raises(PrivacyBoundaryError, match="client-only"):
        server_boundary_check(export)
