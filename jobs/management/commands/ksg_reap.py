"""Settle jobs whose worker vanished (no heartbeat): once, or every N seconds as a service."""
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from jobs.reaper import jobs_reap


class Command(BaseCommand):
    help = ("Fail running jobs whose worker stopped sending heartbeats (KSG_HEARTBEAT_TIMEOUT), committing "
            "the epsilon of the DP steps they took and releasing the rest; their runs end with them.")

    def add_arguments(self, parser):
        parser.add_argument("--timeout", type=float, default=None,
                            help="seconds without a heartbeat before a job counts as lost (default: KSG_HEARTBEAT_TIMEOUT)")
        parser.add_argument("--every", type=float, default=0,
                            help="keep running, reaping every this many seconds (0: once)")

    def handle(self, *args, timeout, every, **options):
        if timeout is not None and timeout <= 0:
            raise CommandError(f"--timeout must be positive, not {timeout}")
        if every < 0:
            raise CommandError(f"--every must be 0 (once) or positive, not {every}")
        while True:
            reaped = jobs_reap(timeout_seconds=timeout)
            for job_id in reaped:
                self.stdout.write(f"reaped job {job_id}")
            if not every:
                self.stdout.write(f"{len(reaped)} job(s) reaped")
                return
            close_old_connections()
            time.sleep(every)
