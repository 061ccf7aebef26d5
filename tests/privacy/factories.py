"""Rows for tests that are about budgets and jobs, not about registering files."""
from decimal import Decimal

from jobs.models import Job
from privacy.models import PrivacyBudget, PrivateDataset


def make_dataset(owner, *, name: str = "clinic-notes", epsilon_limit="10", delta: float = 1e-4) -> PrivateDataset:
    dataset = PrivateDataset.objects.create(
        name=name, owner=owner, path=f"datasets/{name}", source_format="jsonl", sha256="a" * 64,
        size_bytes=1000, record_count=1000, train_count=900, train_units=900, heldout_count=100, split_seed=0,
    )
    PrivacyBudget.objects.create(dataset=dataset, epsilon_limit=Decimal(epsilon_limit), delta=delta)
    return dataset


def make_dp_job(owner, dataset) -> Job:
    return Job.objects.create(kind="selftest", owner=owner, dataset=dataset, params={}, celery_task_id="t")
