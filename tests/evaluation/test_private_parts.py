"""The server-readable aggregates of an evaluation report: the parts quoting private records go,
every figure stays, with its interval and sample size."""
from evaluation.private_parts import evaluation_aggregates
from ksg_web.runs.report_figures import INTERVAL_PATHS
from tests.evaluation.test_report import evaluation_json


def _dig(data, path):
    for key in path:
        data = data[key]
    return data


def test_aggregates_keep_every_interval_while_dropping_what_they_were_computed_from():
    report = evaluation_json()
    report["utility"]["win_rate"]["verdicts"] = [{"index": 0, "outcome": "win"}]

    aggregates = evaluation_aggregates(report)

    for name, path in INTERVAL_PATHS.items():
        assert _dig(aggregates, path) == _dig(report, path), name
        assert _dig(aggregates, path)["n"] >= 1, name
    assert "scores" not in aggregates["utility"]["rouge_l"]["target"]  # the ROUGE-L interval's per-record scores
    assert "verdicts" not in aggregates["utility"]["win_rate"]  # the win-rate interval's items
    assert "secret" not in aggregates["privacy"]["canaries"]["canaries"][0]
    membership = aggregates["privacy"]["membership"]["loss"]
    assert membership["fpr_resolution"] == report["privacy"]["membership"]["loss"]["fpr_resolution"]
    assert membership["note"] == report["privacy"]["membership"]["loss"]["note"] is not None
