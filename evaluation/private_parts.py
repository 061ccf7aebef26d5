"""Which parts of an evaluation report quote the private records, and the report without them.

The evaluate stage runs on the client side and writes two files (evaluation.stage): the whole
report on the private volume (client-only artifact area) and `evaluation_aggregates(report)` in
the server-readable artifact directory. The report page shows the whole one only to users who
may read the dataset's records. No Django here: the split is plain data.

Left out of the aggregates, because each quotes or singles out private records:
- reconstruction examples (masked record text beside the true name and the guesses),
- ROUGE-L examples (held-out questions, the models' answers, the references) and the per-record
  ROUGE-L scores,
- each canary's secret and its log-probability (the secret is a planted private value),
- the win-rate's per-item verdicts (the judge's probabilities per held-out question, in both
  answer orders),
- the unmasked spans and record positions of the leak scan's findings (evaluation.stage).
Every aggregate figure stays: means, rates, AUCs, histograms, ROC points, per-canary exposure.
"""
import copy

CANARY_PRIVATE_KEYS = ("secret", "log_prob")


def evaluation_aggregates(report: dict) -> dict:
    """A deep copy of an evaluation report with every part that quotes private records emptied
    (lists become [], per-item keys are removed); figures stay as they are."""
    report = copy.deepcopy(report)
    privacy, utility = report.get("privacy") or {}, report.get("utility") or {}
    if isinstance(privacy.get("reconstruction"), dict):
        privacy["reconstruction"]["examples"] = []
    for side in (utility.get("rouge_l") or {}).values():
        if isinstance(side, dict):
            side["examples"] = []
            side.pop("scores", None)
    for canary in (privacy.get("canaries") or {}).get("canaries") or []:
        if isinstance(canary, dict):
            for key in CANARY_PRIVATE_KEYS:
                canary.pop(key, None)
    if isinstance(utility.get("win_rate"), dict):
        utility["win_rate"].pop("verdicts", None)
    scan = report.get("leak_scan")
    if isinstance(scan, dict):
        scan["findings"] = [{key: finding.get(key) for key in ("file", "kind", "masked", "records")}
                            for finding in scan.get("findings") or [] if isinstance(finding, dict)]
    return report
