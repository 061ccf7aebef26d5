"""The dataset's privacy statement (issue 25): every release with its mechanism, non-private ones
named as such, the composed guarantee beside dp-accounting's figure, decisions from the audit
trail, library versions; for compliance officers and the owner only."""
import pytest

from jobs.models import Job
from privacy.dp.composition import Mechanism, epsilon_composed, epsilon_independent
from privacy.models import PrivacyBudget
from privacy.selectors import epsilon_ceiling
from privacy.services import (budget_composition_change, budget_nonprivate_release, budget_reserve, budget_settle,
                              dataset_grant)
from tests.privacy.factories import make_dataset

pytestmark = pytest.mark.django_db
DELTA = 1e-4
RUNS = [Mechanism(0.148, 0.713, 7), Mechanism(0.148, 0.9, 7)]


@pytest.fixture()
def world(make_user):
    owner, officer, grantee = make_user("olive"), make_user("cleo", role="compliance_officer"), make_user("gina")
    dataset = make_dataset(owner, name="patients", epsilon_limit="40")
    PrivacyBudget.objects.filter(dataset=dataset).update(accountant="prv")
    dataset.allow_nonprivate_baselines = True
    dataset.save()
    dataset_grant(dataset=dataset, actor=owner, user=grantee)
    budget_composition_change(dataset=dataset, composition="tight", actor=officer, comment="all mechanisms kept")
    for mechanism in RUNS:
        run = Job.objects.create(kind="run", owner=owner, dataset=dataset, status="cancelled",
                                 params={"baseline": "knowledgesg", "preset": "demo", "stages": {}})
        stage = Job.objects.create(kind="dp_finetune", owner=owner, dataset=dataset, parent=run, params={})
        budget_reserve(job=stage, epsilon=4, actor=owner, plan=mechanism)
        budget_settle(job=stage, epsilon=3.9, delta=DELTA, mechanism={**mechanism.as_record(), "unit": "patient_id"},
                      actor=owner)
    leaky = Job.objects.create(kind="finetune_private", owner=owner, dataset=dataset, params={})
    budget_nonprivate_release(job=leaky, actor=owner)
    return {"owner": owner, "officer": officer, "grantee": grantee, "dataset": dataset}


def test_the_statement_states_the_composed_guarantee_beside_the_independent_check(client, world):
    client.force_login(world["officer"])
    response = client.get(f"/datasets/{world['dataset'].pk}/statement/")

    assert response.status_code == 200
    page = response.content.decode()
    composed = epsilon_ceiling(epsilon_composed(mechanisms=RUNS, delta=DELTA))
    independent = epsilon_ceiling(epsilon_independent(mechanisms=RUNS, delta=DELTA))
    assert f"ε = {composed.normalize():f}, δ = 0.0001" in page
    assert f"gives ε = {independent} at δ = 0.0001" in page
    assert "sequential 7.8 (δ 0.0002)" in page and "the tight policy charges the composed figure" in page
    assert page.count("<td>DP-SGD") == 2 and "0.713" in page and "0.9" in page and "patient_id" in page
    assert "non-private release" in page and "does not cover the 1 non-private release" in page
    assert "all mechanisms kept" in page and "Composition policy changed" in page  # the decision, and who
    assert "dp-accounting 0.6.0" in page and "opacus" in page
    assert 'href="/static/css/print.css" media="print"' in page


def test_the_statement_is_for_officers_and_the_owner(client, world):
    client.force_login(world["owner"])
    assert client.get(f"/datasets/{world['dataset'].pk}/statement/").status_code == 200
    client.force_login(world["grantee"])
    assert client.get(f"/datasets/{world['dataset'].pk}/statement/").status_code == 403
