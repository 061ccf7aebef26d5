"""Both figures wherever the budget is shown (issue 25): the dataset page and its policy form,
the dashboard's burn-down, and `ksg_epsilon --dataset`."""
import json
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from privacy.compliance import burndown, budget_rows
from privacy.dp.composition import Mechanism, epsilon_composed, epsilon_independent
from privacy.models import AuditEntry, PrivacyBudget
from privacy.selectors import epsilon_ceiling
from privacy.services import budget_commit, budget_reserve, budget_settle
from tests.privacy.factories import make_dataset, make_dp_job

pytestmark = pytest.mark.django_db
RUN = Mechanism(0.02, 1.0, 500)
DELTA = 1e-4  # make_dataset's


def composed(*mechanisms) -> str:
    return f"{epsilon_ceiling(epsilon_composed(mechanisms=mechanisms, delta=DELTA)).normalize():f}"


@pytest.fixture()
def world(make_user):
    owner, officer = make_user("olive"), make_user("cleo", role="compliance_officer")
    dataset = make_dataset(owner, name="clinic", epsilon_limit="12")
    for epsilon in (2.316214, 2.316214):  # two runs of RUN, their own epsilon as the ledger rounds it
        job = make_dp_job(owner, dataset)
        budget_reserve(job=job, epsilon=epsilon, actor=owner)
        budget_settle(job=job, epsilon=epsilon, delta=DELTA, mechanism=RUN.as_record(), actor=owner)
    return {"owner": owner, "officer": officer, "dataset": dataset}


def test_the_dataset_page_shows_both_figures_and_only_officers_get_the_policy_form(client, world):
    client.force_login(world["owner"])
    page = client.get(f"/datasets/{world['dataset'].pk}/").content.decode()
    assert f"sequential 4.632428 (δ 0.0002), composed {composed(RUN, RUN)} (PRV, δ 0.0001)" in page
    assert "the sequential policy charges the sum" in page and "dp-accounting 0.6.0" in page
    assert 'id="composition-form"' not in page
    assert client.post(f"/datasets/{world['dataset'].pk}/composition/",
                       {"composition": "tight", "comment": "cheaper"}).status_code == 403

    client.force_login(world["officer"])
    assert 'id="composition-form"' in client.get(f"/datasets/{world['dataset'].pk}/").content.decode()
    response = client.post(f"/datasets/{world['dataset'].pk}/composition/",
                           {"composition": "tight", "comment": "every run's mechanism is in the ledger"}, follow=True)
    page = response.content.decode()
    assert "the tight policy charges the composed figure" in page
    assert PrivacyBudget.objects.get(dataset=world["dataset"]).composition == "tight"
    assert AuditEntry.objects.get(action="composition_changed").comment == "every run's mechanism is in the ledger"
    response = client.post(f"/datasets/{world['dataset'].pk}/composition/", {"composition": "loose", "comment": "x"},
                           follow=True)
    assert "composition must be one of sequential, tight" in response.content.decode()


def test_the_burndown_and_the_dashboard_rows_carry_the_composed_figure(world):
    series = next(item for item in burndown() if item["name"] == "clinic")
    assert [point["spent"] for point in series["points"]] == ["0.000000", "2.316214", "4.632428"]
    assert [point["composed"] for point in series["points"]] == [
        "0.000000", f"{Decimal(composed(RUN)):.6f}", f"{Decimal(composed(RUN, RUN)):.6f}"]
    assert series["accountant"] == "prv" and series["composition"] == "sequential"
    (row,) = budget_rows()
    assert f"composed {composed(RUN, RUN)} (PRV" in row["figures"]


def test_a_commit_without_a_mechanism_stays_on_top_in_the_burndown(world):
    job = make_dp_job(world["owner"], world["dataset"])
    budget_reserve(job=job, epsilon=1, actor=world["owner"])
    budget_commit(job=job, epsilon=0.5, delta=DELTA, mechanism={}, actor=world["owner"])
    series = next(item for item in burndown() if item["name"] == "clinic")
    assert series["points"][-1]["composed"] == f"{Decimal(composed(RUN, RUN)) + Decimal('0.5'):.6f}"


def test_ksg_epsilon_prints_a_dataset_s_sequential_and_composed_spend(world):
    out = StringIO()
    call_command("ksg_epsilon", "--dataset", "clinic", stdout=out)
    report = json.loads(out.getvalue())
    assert report["dataset"] == "clinic" and report["policy"] == "sequential"
    assert report["sequential"] == {"epsilon": "4.632428", "delta": pytest.approx(2e-4), "reserved": "0"}
    assert report["composed"]["epsilon"] == composed(RUN, RUN) and report["composed"]["mechanisms"] == 2
    assert report["charged"]["spent"] == "4.632428" and "opacus" in report["versions"]
    independent = epsilon_ceiling(epsilon_independent(mechanisms=[RUN, RUN], delta=DELTA))
    assert report["independent_check"]["epsilon"] == str(independent) and report["independent_check"]["commits"] == 2

    with pytest.raises(CommandError, match="either --dataset or"):
        call_command("ksg_epsilon", "--dataset", "clinic", "--steps", "3")
    with pytest.raises(CommandError, match="no dataset named 'nope'"):
        call_command("ksg_epsilon", "--dataset", "nope")
    with pytest.raises(CommandError, match="missing --noise-multiplier, --steps"):
        call_command("ksg_epsilon", "--sample-rate", "0.1", "--delta", "1e-5")


def test_ksg_composition_sets_the_policy_for_an_officer_only(world):
    out = StringIO()
    with pytest.raises(CommandError, match="only a compliance officer"):
        call_command("ksg_composition", "--dataset", "clinic", "--policy", "tight", "--actor", "olive",
                     "--comment", "cheaper")
    call_command("ksg_composition", "--dataset", "clinic", "--policy", "tight", "--actor", "cleo",
                 "--comment", "all mechanisms kept", stdout=out)
    assert "the tight policy charges the composed figure" in out.getvalue()
    assert PrivacyBudget.objects.get(dataset=world["dataset"]).composition == "tight"
    assert AuditEntry.objects.get(action="composition_changed").actor == world["officer"]
