"""The privacy boundary as a check on files: what the server side can read must not hold a
private record's text. Used by tests/privacy/test_boundary_scan.py."""
import json
from pathlib import Path

from django.conf import settings

from privacy.leak_scan import LeakFinding, PrivateTextIndex, directories_scan
from privacy.selectors import dataset_canaries, dataset_records


def server_readable_roots() -> list[Path]:
    """The directories the server side mounts (compose.yaml's worker-server: the artifact
    directory and the model cache); never the private directory."""
    return [Path(settings.KSG_ARTIFACT_DIR), Path(settings.KSG_MODEL_CACHE)]


def dataset_private_index(dataset, *, planted: list[tuple[dict, dict[str, list[str]]]] = ()) -> PrivateTextIndex:
    """Every private record of a dataset (both splits and the canaries, from the private
    directory) indexed, with the identifying values a demo generator planted in each
    (privacy.demo_data.demo_records_planted), matched to the record by its text."""
    splits = {split: dataset_records(dataset=dataset, split=split) for split in ("train", "heldout")}
    splits["canaries"] = dataset_canaries(dataset=dataset)
    by_text = {(record["instruction"], record["response"]): values for record, values in planted}
    identifiers = {}
    for split, records in splits.items():
        for position, record in enumerate(records):
            values = by_text.get((record.get("instruction"), record.get("response")), {})
            identifiers[f"{split}[{position}]"] = [value for kind in values.values() for value in kind]
    return PrivateTextIndex(splits, identifiers=identifiers)


def database_findings(index: PrivateTextIndex) -> list[LeakFinding]:
    """The private text in the rows the server side reads from the database (it holds the
    database URL): every job's parameters and error, every job event, every ledger row."""
    from jobs.models import Job, JobEvent
    from privacy.models import LedgerEntry

    findings = []
    for job in Job.objects.all():
        findings += index.scan(json.dumps(job.params) + " " + (job.error or ""), file=f"database: job {job.pk}")
    for event in JobEvent.objects.all():
        findings += index.scan(json.dumps(event.payload), file=f"database: event {event.pk} of job {event.job_id}")
    for entry in LedgerEntry.objects.all():
        findings += index.scan(f"{entry.reason} {json.dumps(entry.mechanism)}", file=f"database: ledger row {entry.pk}")
    return findings


def boundary_check(index: PrivateTextIndex, roots: list[Path] | None = None) -> int:
    """Scan every file under the server-readable roots; raise AssertionError naming each file and
    private record found (the text masked). Returns how many files were scanned."""
    findings, files = directories_scan(index, roots or server_readable_roots())
    findings += database_findings(index)
    if findings:
        raise AssertionError("private text where the server side can read it:\n" + "\n".join(
            f"  {f.file}: {f.kind} of private record {f.record} ({f.records} records hold it): {f.masked}"
            for f in findings))
    return files
