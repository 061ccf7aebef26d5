"""The models and their constraints, on the configured database (PostgreSQL in CI, else SQLite)."""
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from jobs.models import Artifact, Job, JobEvent
from privacy.models import PrivacyBudget, PrivateDataset

pytestmark = pytest.mark.django_db


@pytest.fixture()
def dataset(make_user):
    return PrivateDataset.objects.create(
        name="clinic-notes", owner=make_user("ada"), path="datasets/clinic-notes", source_format="jsonl",
        sha256="a" * 64, size_bytes=123_456, record_count=1000, train_count=900, heldout_count=100, split_seed=7,
        pii_summary={"name": 12, "email": 3},
    )


def test_a_job_with_its_dataset_events_and_artifacts_round_trips(dataset):
    budget = PrivacyBudget.objects.create(dataset=dataset, epsilon_limit=Decimal("10"), delta=1e-4)
    job = Job.objects.create(kind="selftest", owner=dataset.owner, dataset=dataset, params={"steps": 3})
    JobEvent.objects.create(job=job, seq=1, kind="metric", payload={"loss": 1.5, "names": ["ü", "日本"]})
    Artifact.objects.create(job=job, kind="report", path="job-1/report.json", sha256="b" * 64, bytes=10)

    job = Job.objects.get(pk=job.pk)
    assert (job.status, job.attempts, job.dataset, job.params) == ("queued", 0, dataset, {"steps": 3})
    assert job.events.get().payload == {"loss": 1.5, "names": ["ü", "日本"]}
    assert dataset.budget == budget and budget.epsilon_limit == Decimal("10.000000")
    assert job.artifacts.get().bytes == 10
    assert PrivateDataset.objects.get().pii_summary == {"name": 12, "email": 3}


def test_seq_is_unique_per_job(dataset):
    job = Job.objects.create(kind="selftest", owner=dataset.owner, params={})
    JobEvent.objects.create(job=job, seq=1, kind="log", payload={})
    with pytest.raises(IntegrityError), transaction.atomic():
        JobEvent.objects.create(job=job, seq=1, kind="log", payload={})


@pytest.mark.parametrize("epsilon_limit, delta", [(Decimal("0"), 1e-5), (Decimal("-1"), 1e-5), (Decimal("1"), 1.0)])
def test_budget_constraints_refuse_impossible_budgets(dataset, epsilon_limit, delta):
    with pytest.raises(IntegrityError), transaction.atomic():
        PrivacyBudget.objects.create(dataset=dataset, epsilon_limit=epsilon_limit, delta=delta)


def test_a_dataset_with_jobs_cannot_be_deleted(dataset):
    Job.objects.create(kind="selftest", owner=dataset.owner, dataset=dataset, params={})
    with pytest.raises(Exception, match="protected"):
        dataset.delete()
