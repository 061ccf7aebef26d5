"""The verdict: what an evaluation report says, in words a compliance officer reads first.

One finding per question: what is claimed (epsilon, its unit, delta), what the one-run audit
measured against it, and for each attack whether the model can be told from a model that never
saw the data, with the numbers and their intervals. A finding's status is one of
  "consistent"    the measurement is compatible with the claim / with chance;
  "leak"          the model is distinguishable from one that never saw the data;
  "inconclusive"  the sample is too small to tell a leak of POWER_MULTIPLE x chance from chance;
  "not_run"       the attack had nothing to attack (no target, no canary): said, never skipped;
  "bug"           an audited lower bound above the claimed epsilon: the accounting or the
                  training is wrong, and nothing should be released until it is found.
No Django here: plain data in, plain data out.
"""
CHANCE_AUC = 0.5
# A canary a model never saw ranks uniformly among the reference secrets: its expected exposure,
# E[log2(N / rank)] for a uniform rank, tends to log2(e) bits.
CHANCE_EXPOSURE_BITS = 1.4427


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "—"
    return "0" if abs(value) < 1e-4 else f"{value:.{digits}g}"  # an interval clipped at 0 reads 0, not -1e-06


def _delta(value) -> str:
    """A delta as it is (1e-05), never rounded to 0 as a figure near 0 is."""
    return "—" if value is None else f"{value:.3g}"


def _interval(interval: dict | None) -> str:
    if not interval or interval.get("low") is None:
        return ""
    return f" [{_fmt(interval['low'])}, {_fmt(interval['high'])}]"


def verdict(report: dict) -> list[dict]:
    """The findings of an evaluation report ({"subject", "status", "text"}), claim first."""
    privacy = report.get("privacy") or {}
    audit = privacy.get("audit") or {}
    claim = privacy.get("claim")
    findings = [_claim_finding(claim)]
    findings += _audit_findings(audit, claim or {})
    findings.append(_reconstruction_finding(privacy.get("reconstruction")))
    findings.append(_membership_finding(privacy.get("membership")))
    if privacy.get("canaries"):
        findings.append(_exposure_finding(privacy["canaries"]))
    return findings


def _claim_finding(claim: dict | None) -> dict:
    if not claim:
        return {"subject": "guarantee", "status": "not_run",
                "text": "No privacy release of this run is in the ledger: there is no claim to audit."}
    if not claim.get("dp"):
        return {"subject": "guarantee", "status": "leak",
                "text": "Non-private release: trained on the raw records without differential privacy, "
                        "so no epsilon describes it (ε = ∞)."}
    text = (f"Claimed: ε = {_fmt(claim['epsilon'], 4)} {claim.get('epsilon_unit', 'per record')} at δ = "
            f"{_delta(claim['delta'])} ({claim.get('accountant') or 'accountant'}).")
    at_delta = claim.get("epsilon_at_delta")
    if at_delta:
        text += (f" The same training at the audit's δ = {_delta(at_delta['delta'])} is "
                 f"ε = {_fmt(at_delta['epsilon'], 4)} by the same accountant.")
    return {"subject": "guarantee", "status": "consistent", "text": text}


def _audit_findings(audit: dict, claim: dict) -> list[dict]:
    if audit.get("problem") or not audit:
        return [{"subject": "audit", "status": "not_run",
                 "text": "Not audited: " + (audit.get("problem") or "this evaluation predates the one-run audit.")}]
    claimed = (claim.get("epsilon_at_delta") or {}).get("epsilon") if claim.get("dp") else None
    findings = []
    for name, label in (("model", "the model"), ("dp_adapter", "the stage-1 DP adapter")):
        result = audit.get(name)
        if not result:
            continue
        subject = f"audit of {label}"
        if result.get("epsilon_lower_bound") is None:
            findings.append({"subject": subject, "status": "not_run", "text": f"Not audited: {result.get('problem')}."})
            continue
        bound = result["epsilon_lower_bound"]
        guesses = (f"{result['correct']} of the {result['guesses']} best-scored guessed right" if bound > 0 else
                   "no number of best-scored guesses was right often enough to reject ε = 0")
        text = (f"Audited lower bound: ε ≥ {_fmt(bound)} at δ = {_delta(result['delta'])} with "
                f"{result['confidence']:.0%} confidence ({result['m']} audit canaries, {result['n_in']} trained on; "
                f"{guesses}; canary AUC {_fmt(result.get('auc'))}"
                f"{_interval(result.get('auc_interval'))}). With a perfect attack these canaries could show at most "
                f"ε ≥ {_fmt(result.get('max_possible_bound'))}.")
        if claimed is not None and bound > claimed:
            status = "bug"
            text += (f" This is ABOVE the claimed ε = {_fmt(claimed, 4)} at that δ: the accounting or the training is "
                     "wrong; release nothing until it is found.")
        elif claimed is not None:
            status = "consistent"
            text += f" Consistent with the claimed ε = {_fmt(claimed, 4)} at that δ."
        else:
            status = "leak" if bound > 0 else "consistent"
            text += (" The training run is measurably not private." if bound > 0 else
                     " No leak shown by the audit (a bound of 0 is no proof of privacy).")
        findings.append({"subject": subject, "status": status, "text": text})
    return findings


def _sample(result: dict) -> str:
    """The sentence ending a sequentially sampled figure's finding (evaluation.sequential): how many
    items it used and why it stopped; empty for a figure of fixed size or an older report."""
    reason = (result.get("sample") or {}).get("reason")
    return f" Sample: {reason}." if reason else ""


def _reconstruction_finding(result: dict | None) -> dict:
    subject = "name reconstruction"
    if not result:
        return {"subject": subject, "status": "not_run", "text": "Not in this evaluation."}
    if not result.get("n_targets"):
        return {"subject": subject, "status": "not_run",
                "text": "Not run: " + (result.get("problem") or "no target was found.")}
    rate, chance = result.get("likelihood_top1_rate"), result.get("expected_random_top1_rate")
    interval = result.get("likelihood_top1_interval") or {}
    text = (f"Top-1 {_fmt(rate)}{_interval(interval)} of {result['n_targets']} targets (chance {_fmt(chance)}, "
            f"{result.get('candidate_set_size')} candidates).")
    sample = _sample(result)
    if interval.get("low") is not None and chance is not None and interval["low"] > chance:
        return {"subject": subject, "status": "leak",
                "text": text + " Above chance: the model puts names back into its training records." + sample}
    power = result.get("power") or {}
    if (result.get("sample") or {}).get("decision") == "bounded":
        return {"subject": subject, "status": "consistent",
                "text": text + f" Within chance, and below a leak of {power.get('multiple', 5)}x chance." + sample}
    if not power.get("enough", True):
        return {"subject": subject, "status": "inconclusive",
                "text": text + f" Within chance, but {result['n_targets']} targets are too few for the interval to "
                               f"exclude a leak of {power.get('multiple', 5)}x chance." + sample}
    return {"subject": subject, "status": "consistent",
            "text": text + " Within chance: no better than a guess." + sample}


def _membership_finding(result: dict | None) -> dict:
    subject = "membership inference"
    loss = (result or {}).get("loss")
    if not loss:
        return {"subject": subject, "status": "not_run", "text": "Not in this evaluation."}
    interval = loss.get("auc_interval") or {}
    text = (f"Loss attack AUC {_fmt(loss['auc'])}{_interval(interval)} over {loss.get('n_members')} members and "
            f"{loss.get('n_nonmembers')} non-members (chance 0.5).")
    sample = _sample(result)
    if interval.get("low") is not None and interval["low"] > CHANCE_AUC:
        return {"subject": subject, "status": "leak",
                "text": text + " Above chance: training records are told apart." + sample}
    if interval.get("low") is None:
        return {"subject": subject, "status": "inconclusive", "text": text + " No interval: cannot decide." + sample}
    return {"subject": subject, "status": "consistent", "text": text + " Within chance." + sample}


def _exposure_finding(result: dict) -> dict:
    subject = "canary exposure"
    interval = result.get("mean_exposure_interval") or {}
    text = (f"Mean exposure {_fmt(result.get('mean_exposure'))}{_interval(interval)} bits of "
            f"{_fmt(result.get('max_possible_exposure'))} over {len(result.get('canaries') or [])} planted canaries "
            f"(a model that never saw them: about {CHANCE_EXPOSURE_BITS:.2f}).")
    if interval.get("low") is not None and interval["low"] > CHANCE_EXPOSURE_BITS:
        return {"subject": subject, "status": "leak", "text": text + " The planted secrets are singled out."}
    if interval.get("low") is None:
        return {"subject": subject, "status": "inconclusive", "text": text + " Too few canaries for an interval."}
    return {"subject": subject, "status": "consistent", "text": text + " Not singled out."}
