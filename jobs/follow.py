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
