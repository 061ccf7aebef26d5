"""The verdict: each finding's status follows the numbers, and nothing is silently skipped."""
from evaluation.verdict import verdict


def _wilson(low, high, n):
    return {"low": low, "high": high, "n": n, "method": "Wilson score", "confidence": 0.95}


def _report(*, claim, audit_bound=0.0, top1=(0.05, _wilson(0.01, 0.17, 40)), n_targets=40, power=True, auc=(0.5, 0.4, 0.6)):
    audit_model = {"epsilon_lower_bound": audit_bound, "delta": 1e-5, "confidence": 0.95, "m": 128, "n_in": 64,
                   "correct": 8, "guesses": 8, "auc": 0.9, "max_possible_bound": 2.5}
    return {"privacy": {
        "audit": {"model": audit_model, "delta": 1e-5},
        "claim": claim,
        "reconstruction": {"n_targets": n_targets, "likelihood_top1_rate": top1[0], "likelihood_top1_interval": top1[1],
                           "expected_random_top1_rate": 0.04, "candidate_set_size": 25,
                           "power": {"enough": power, "multiple": 5}},
        "membership": {"loss": {"auc": auc[0], "auc_interval": {"low": auc[1], "high": auc[2]}, "n_members": 60,
                                "n_nonmembers": 30}},
    }}


DP_CLAIM = {"dp": True, "epsilon": 4.0, "delta": 1e-3, "accountant": "prv", "epsilon_unit": "per patient_id",
            "epsilon_at_delta": {"delta": 1e-5, "epsilon": 5.5}}


def _by_subject(findings):
    return {finding["subject"]: finding for finding in findings}


def test_a_private_model_is_consistent_everywhere():
    findings = _by_subject(verdict(_report(claim=DP_CLAIM)))
    assert findings["guarantee"]["status"] == "consistent" and "per patient_id" in findings["guarantee"]["text"]
    assert findings["audit of the model"]["status"] == "consistent"
    assert "5.5" in findings["audit of the model"]["text"]
    assert findings["name reconstruction"]["status"] == "consistent"
    assert findings["membership inference"]["status"] == "consistent"


def test_an_audit_above_the_claim_is_a_bug_not_a_result():
    findings = _by_subject(verdict(_report(claim=DP_CLAIM, audit_bound=6.0)))
    assert findings["audit of the model"]["status"] == "bug"
    assert "δ = 0.001 (prv)" in findings["guarantee"]["text"] and "audit's δ = 1e-05 is" in findings["guarantee"]["text"]
    assert "release nothing" in findings["audit of the model"]["text"]


def test_a_leaky_model_is_called_a_leak_with_its_numbers():
    report = _report(claim={"dp": False}, audit_bound=1.7, top1=(0.3, _wilson(0.18, 0.45, 40)), auc=(0.7, 0.6, 0.8))
    findings = _by_subject(verdict(report))
    assert findings["guarantee"]["status"] == "leak" and "ε = ∞" in findings["guarantee"]["text"]
    assert findings["audit of the model"]["status"] == "leak"
    assert "ε ≥ 1.7 at δ = 1e-05 " in findings["audit of the model"]["text"]  # a delta is never rounded to 0
    assert findings["name reconstruction"]["status"] == "leak" and "0.3 [0.18, 0.45]" in findings["name reconstruction"]["text"]
    assert findings["membership inference"]["status"] == "leak"


def test_an_attack_without_targets_says_it_did_not_run():
    report = _report(claim=DP_CLAIM, n_targets=0)
    report["privacy"]["reconstruction"]["problem"] = "no target: name the identifying fields"
    finding = _by_subject(verdict(report))["name reconstruction"]
    assert finding["status"] == "not_run" and "no target" in finding["text"]


def test_too_few_targets_is_inconclusive_not_private():
    finding = _by_subject(verdict(_report(claim=DP_CLAIM, n_targets=5, power=False)))["name reconstruction"]
    assert finding["status"] == "inconclusive" and "too few" in finding["text"]


def test_a_dataset_without_audit_canaries_is_not_audited_and_says_how():
    report = _report(claim=DP_CLAIM)
    report["privacy"]["audit"] = {"problem": "the dataset was registered without audit canaries"}
    findings = _by_subject(verdict(report))
    assert findings["audit"]["status"] == "not_run" and "without audit canaries" in findings["audit"]["text"]
    assert findings["guarantee"]["status"] == "consistent"  # the claim stands without an audit


def test_a_sample_stopped_below_the_powered_leak_is_consistent_and_says_why_it_stopped():
    report = _report(claim=DP_CLAIM, n_targets=30, power=False, top1=(0.0, _wilson(0.0, 0.15, 30)))
    reason = "stopped at 30 of 30 targets (look 3 of 3): the interval [0.000, 0.152] of 0 of 30 lies below 5x chance"
    report["privacy"]["reconstruction"]["sample"] = {"decision": "bounded", "reason": reason}
    report["privacy"]["membership"]["sample"] = {"decision": "leak", "reason": "stopped at 45 of 90 records"}
    findings = _by_subject(verdict(report))
    # bounded by its own interval: no longer "too few targets", whatever the power at a fixed size says
    assert findings["name reconstruction"]["status"] == "consistent"
    assert findings["name reconstruction"]["text"].endswith(f"Sample: {reason}.")
    assert "Sample: stopped at 45 of 90 records." in findings["membership inference"]["text"]
