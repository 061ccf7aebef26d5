"""Following a job from a terminal: print its events as they are stored, until it finishes."""
import time
from typing import Callable

from .models import Job
from .selectors import job_events_after


def job_follow(*, job_id: int, write: Callable[[str], None], poll_seconds: float = 0.5,
               timeout_seconds: float | None = None) -> Job:
    """Print one line per event (from the database, the source of truth); returns the finished job."""
    last_seq, started = 0, time.monotonic()
    while True:
        for event in job_events_after(job_id=job_id, after_seq=last_seq):
            last_seq = event["seq"]
            write(event_line(event))
        job = Job.objects.get(pk=job_id)
        if job.is_finished and not job_events_after(job_id=job_id, after_seq=last_seq):
            return job
        if timeout_seconds is not None and time.monotonic() - started > timeout_seconds:
            return job
        time.sleep(poll_seconds)


def event_line(event: dict) -> str:
    payload = event["payload"]
    if event["kind"] == "epsilon":
        detail = (f"step {payload['step']}/{payload['planned_steps']}  epsilon {payload['epsilon']:.4f} "
                  f"(target {payload['target_epsilon']}, sigma {payload['noise_multiplier']:.4f}, q {payload['sample_rate']:.4f})")
    elif event["kind"] == "metric":
        detail = "  ".join(f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}"
                           for key, value in payload.items())
    elif event["kind"] == "status":
        detail = payload["status"] + (f": {payload['error']}" if payload.get("error") else "")
    else:
        detail = payload.get("message", str(payload))
    return f"#{event['seq']:<4} {event['time'][11:19]} {event['kind']:<7} {detail}"


def progress_bar(done: int, total: int, width: int = 20) -> str:
    filled = 0 if total <= 0 else min(width, round(width * done / total))
    return "[" + "#" * filled + "." * (width - filled) + f"] {done}/{total}"


def run_follow(*, run_id: int, write: Callable[[str], None], poll_seconds: float = 1.0) -> Job:
    """Print each stage's progress (a bar per step or item) and status changes until the run ends."""
    seen: dict[int, int] = {}
    while True:
        run = Job.objects.get(pk=run_id)
        for child in run.children.order_by("pk"):
            for event in job_events_after(job_id=child.pk, after_seq=seen.get(child.pk, 0)):
                seen[child.pk] = event["seq"]
                line = _stage_line(child.kind, event)
                if line:
                    write(line)
        if run.is_finished and all(child.is_finished for child in run.children.all()):
            write(f"run {run.pk} {run.status}" + (f": {run.error}" if run.error else ""))
            return run
        time.sleep(poll_seconds)


def _stage_line(kind: str, event: dict) -> str | None:
    payload = event["payload"]
    if event["kind"] == "status":
        return f"{kind:<16} {payload['status']}" + (f": {payload['error']}" if payload.get("error") else "")
    if event["kind"] == "epsilon":
        return (f"{kind:<16} {progress_bar(payload['step'], payload['planned_steps'])} "
                f"epsilon {payload['epsilon']:.3f} of {payload['target_epsilon']}")
    if event["kind"] == "metric" and "loss" in payload and payload.get("loss") is not None:
        return f"{kind:<16} step {payload['step']} loss {payload['loss']:.4f}"
    if event["kind"] == "metric" and "generated" in payload:
        return f"{kind:<16} {payload['generated']} generated"
    if event["kind"] == "log":
        return f"{kind:<16} {payload.get('message', '')}"
    return None
