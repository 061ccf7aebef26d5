"""The selftest stage: no model, just steps, so the whole job path can be watched end to end."""
import json
import math
import random
from dataclasses import dataclass, field

from .kinds import SERVER_QUEUE, JobKindSpec
from .models import Artifact


@dataclass(frozen=True)
class SelftestParams:
    """A job that proves the whole path (form, Celery, events, websocket) with no model."""

    steps: int = field(default=30, metadata={"min": 1, "max": 10_000, "help": "Number of steps to run."})
    interval_seconds: float = field(
        default=0.5, metadata={"min": 0.0, "max": 60.0, "help": "Pause between steps, in seconds."}
    )
    fail_at_step: int = field(
        default=0, metadata={"min": 0, "max": 10_000, "help": "Raise an error at this step (0: never)."}
    )


KIND = JobKindSpec("selftest", "Self-test", SERVER_QUEUE, SelftestParams, stage="jobs.selftest.selftest_run",
                   time_limit=15 * 60)


class SelftestFailure(Exception):
    """The failure a selftest was asked to produce (fail_at_step)."""


def selftest_run(params: SelftestParams, ctx) -> None:
    """Emit one `metric` event per step (a decaying curve with seeded noise), then a report."""
    rng = random.Random(ctx.job_id)
    series = []
    for step in range(1, params.steps + 1):
        ctx.check()
        if step == params.fail_at_step:
            raise SelftestFailure(f"failed at step {step}, as asked by fail_at_step")
        value = 2.0 * math.exp(-3.0 * step / params.steps) + 0.1 * rng.random()
        ctx.metric(step=step, loss=round(value, 6))
        series.append(value)
        if params.interval_seconds:
            ctx.wait(params.interval_seconds)
    ctx.artifact_dir.mkdir(parents=True, exist_ok=True)
    report = ctx.artifact_dir / "selftest-report.json"
    report.write_text(json.dumps({"steps": params.steps, "final_loss": series[-1], "series": series}, indent=1))
    ctx.artifact(kind=Artifact.Kind.REPORT, path=report)
