"""Tight composition of a dataset's DP history (privacy.dp.composition), checked against an
independent accountant: Google dp-accounting's PLDAccountant over ComposedDpEvent of
PoissonSampledDpEvent(GaussianDpEvent) (issue 25)."""
import dp_accounting
import pytest
from dp_accounting.pld import pld_privacy_accountant

from privacy.dp.accountant import AccountingError, epsilon_compute
from privacy.dp.composition import (
    Mechanism,
    composition_versions,
    epsilon_composed,
    epsilon_independent,
    mechanisms_merged,
)

# Heterogeneous histories: different sample rates, noise multipliers and step counts.
HISTORIES = {
    "three DP-SGD runs of different shape": [Mechanism(0.01, 1.0, 1000), Mechanism(0.02, 0.8, 500),
                                             Mechanism(0.005, 1.5, 3000)],
    "the demo's person-level runs, a retrain at other noise": [Mechanism(0.148, 0.713, 7), Mechanism(0.148, 0.713, 7),
                                                               Mechanism(0.148, 0.9, 7)],
    "four runs, batch fractions 1% to 20%": [Mechanism(0.05, 1.2, 200), Mechanism(0.1, 2.0, 100),
                                             Mechanism(0.01, 0.9, 2000), Mechanism(0.2, 3.0, 50)],
}


def pld_of(history, delta):
    """dp-accounting's figure, written out here from its public API (not through the code under test)."""
    accountant = pld_privacy_accountant.PLDAccountant(value_discretization_interval=1e-4)
    for mechanism in history:
        event = dp_accounting.PoissonSampledDpEvent(mechanism.sample_rate,
                                                    dp_accounting.GaussianDpEvent(mechanism.noise_multiplier))
        accountant.compose(dp_accounting.SelfComposedDpEvent(event, mechanism.steps))
    return accountant.get_epsilon(delta)


@pytest.mark.parametrize("delta", [1e-5, 1e-3])
@pytest.mark.parametrize("name", sorted(HISTORIES))
def test_composed_epsilon_is_within_one_percent_of_dp_accounting_and_never_below(name, delta):
    history = HISTORIES[name]
    composed = epsilon_composed(mechanisms=history, delta=delta, accountant="prv")
    independent = pld_of(history, delta)

    assert composed >= independent, (composed, independent)
    assert composed <= independent * 1.01, (composed, independent)


def test_the_statement_check_is_dp_accounting_s_figure():
    history = HISTORIES["the demo's person-level runs, a retrain at other noise"]
    assert epsilon_independent(mechanisms=history, delta=1e-3) == pytest.approx(pld_of(history, 1e-3), rel=1e-9)


@pytest.mark.parametrize("name", sorted(HISTORIES))
def test_composed_epsilon_is_below_the_sum_and_above_every_single_job(name):
    history, delta = HISTORIES[name], 1e-5
    singles = [epsilon_compute(sample_rate=m.sample_rate, noise_multiplier=m.noise_multiplier, steps=m.steps,
                               delta=delta) for m in history]
    for accountant in ("prv", "rdp"):
        composed = epsilon_composed(mechanisms=history, delta=delta, accountant=accountant)
        assert max(singles) < composed < sum(singles) * 0.9, (accountant, composed, singles)


def test_one_job_composes_to_its_own_epsilon():
    job = Mechanism(0.01, 1.1, 400)
    alone = epsilon_compute(sample_rate=0.01, noise_multiplier=1.1, steps=400, delta=1e-5)
    assert epsilon_composed(mechanisms=[job], delta=1e-5) == pytest.approx(alone, rel=1e-9)


def test_equal_runs_merge_into_one_of_summed_steps():
    runs = [Mechanism(0.02, 1.0, 300), Mechanism(0.01, 1.0, 100), Mechanism(0.02, 1.0, 200)]
    assert mechanisms_merged(runs) == (Mechanism(0.01, 1.0, 100), Mechanism(0.02, 1.0, 500))
    two_runs = epsilon_composed(mechanisms=runs[::2], delta=1e-5)
    one_run = epsilon_compute(sample_rate=0.02, noise_multiplier=1.0, steps=500, delta=1e-5)
    assert two_runs == pytest.approx(one_run, rel=1e-9)


def test_no_history_composes_to_zero_and_gdp_is_refused():
    assert epsilon_composed(mechanisms=[], delta=1e-5) == 0.0
    with pytest.raises(AccountingError, match="bound"):
        epsilon_composed(mechanisms=[Mechanism(0.01, 1.0, 10)], delta=1e-5, accountant="gdp")
    with pytest.raises(AccountingError, match="sample_rate"):
        Mechanism(1.5, 1.0, 10)


@pytest.mark.parametrize("record", [None, {}, {"sample_rate": 0.1, "steps": 3}, {"dp": False},
                                    {"sample_rate": 0.1, "noise_multiplier": 1.0, "steps": 0},
                                    {"sample_rate": "x", "noise_multiplier": 1.0, "steps": 3}])
def test_a_ledger_row_without_a_whole_mechanism_names_none(record):
    assert Mechanism.from_record(record) is None


def test_a_ledger_row_with_a_mechanism_names_it():
    record = {"sample_rate": 0.148, "noise_multiplier": 0.713, "steps": 7, "accountant": "prv"}
    assert Mechanism.from_record(record) == Mechanism(0.148, 0.713, 7)
    assert set(composition_versions()) >= {"opacus", "numpy", "scipy", "dp-accounting"}
