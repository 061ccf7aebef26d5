"""A registered demo dataset for tests that need private records on disk and a budget."""
from pathlib import Path

from privacy.datasets import dataset_write_jsonl
from privacy.demo_data import demo_records
from privacy.services import dataset_register


def register_demo_dataset(directory: Path, owner, *, n: int, seed: int, epsilon_limit: str = "10",
                          heldout_fraction: float = 0.1, **options):
    """(dataset, records): `n` medical demo records written under `directory` and registered as
    "clinic" (`options`: dataset_register's canaries, canary_repeats, allow_nonprivate_baselines).
    The caller points settings.KSG_PRIVATE_DIR somewhere temporary first."""
    records = demo_records(domain="medical", n=n, seed=seed)
    source = Path(directory) / "clinic.jsonl"
    dataset_write_jsonl(source, records)
    dataset = dataset_register(owner=owner, name="clinic", source_path=source, epsilon_limit=epsilon_limit,
                               heldout_fraction=heldout_fraction, **options)
    return dataset, records
