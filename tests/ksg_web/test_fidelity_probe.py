"""`ksg_fidelity`: sample instructions the way stage 2 would and measure their fidelity to the
dataset's held-out instructions, for the people who may read that split only."""
import io

import pytest
from django.core.management import CommandError, call_command

from jobs.models import Job
from tests.support.datasets import register_demo_dataset
from tests.support.tiny_model import tiny_model_dir

pytestmark = pytest.mark.django_db


@pytest.fixture()
def clinic(tmp_path, settings, make_user):
    settings.KSG_PRIVATE_DIR = tmp_path / "private"
    settings.KSG_MODEL_CACHE = tmp_path / "cache"
    owner = make_user("ada")
    dataset, records = register_demo_dataset(tmp_path, owner, n=60, seed=3, heldout_fraction=0.25)
    model_dir = tiny_model_dir(tmp_path / "tiny", [r["instruction"] + " " + r["response"] for r in records])
    return owner, dataset, model_dir


def probe(*args: str) -> str:
    out = io.StringIO()
    call_command("ksg_fidelity", *args, stdout=out)
    return out.getvalue()


def test_the_base_models_sampled_user_turns_get_fidelity_figures_with_intervals(clinic):
    owner, dataset, model_dir = clinic
    printed = probe("--dataset", "clinic", "--base-model", str(model_dir), "--count", "12", "--max-new-tokens", "16")

    heldout = dataset.heldout_count
    assert f"sampled from {model_dir} alone (no adapter) (user_turn)" in printed
    assert f"compared with {heldout} held-out instructions" in printed
    mauve = next(line for line in printed.splitlines() if line.strip().startswith("mauve"))
    value, low, high = (float(part.strip("[],")) for part in mauve.split()[1:4])
    assert 0 <= low <= value <= high <= 1
    assert printed.count("  sample: ") == 5


def test_the_probe_is_refused_without_a_grant_and_for_a_job_that_has_no_adapter(clinic, make_user):
    owner, dataset, model_dir = clinic
    make_user("eve")
    with pytest.raises(CommandError, match="no grant on dataset 'clinic'"):
        probe("--dataset", "clinic", "--base-model", str(model_dir), "--user", "eve")
    other = Job.objects.create(kind="generate", owner=owner, params={})
    with pytest.raises(CommandError, match=f"job {other.pk} is a generate job"):
        probe("--dataset", "clinic", "--adapter-job", str(other.pk), "--base-model", str(model_dir))
    for count in ("3", "1000000"):
        with pytest.raises(CommandError, match="--count must be between 10"):
            probe("--dataset", "clinic", "--count", count)
    with pytest.raises(CommandError, match="no dataset named 'nowhere'"):
        probe("--dataset", "nowhere")
