"""The compliance dashboard's live feed: `/ws/compliance/`.

Compliance officers and administrators only (anonymous: close 4401; anyone else: 4403; foreign
origins are refused by the ASGI router's origin check). On connect the consumer sends a
snapshot of every budget, the burn-down and the runs in flight, read from the database. After
that it sends a fresh snapshot whenever a budget service publishes a change to the group
`compliance` (privacy.events, after the ledger row commits), and re-reads the database every
KSG_STREAM_POLL_SECONDS, sending only when something changed, so a lost notification (a Redis
restart, a job run by another process in the embedded mode) delays an update but never loses it.
"""
import asyncio

from django.conf import settings
from django.utils import timezone

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from .access import is_compliance_officer
from .compliance import compliance_snapshot, compliance_version
from .events import COMPLIANCE_GROUP

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


class ComplianceConsumer(AsyncJsonWebsocketConsumer):
    joined = False
    poller: asyncio.Task | None = None

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not await database_sync_to_async(is_compliance_officer)(user):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.sending = asyncio.Lock()  # one reader-and-sender at a time: snapshots go out in order
        self.version = None
        self.last_sent = None
        await self.channel_layer.group_add(COMPLIANCE_GROUP, self.channel_name)
        self.joined = True
        await self.accept()
        await self.send_snapshot(changed=[])
        if settings.KSG_STREAM_POLL_SECONDS > 0:
            self.poller = asyncio.create_task(self.poll_database(settings.KSG_STREAM_POLL_SECONDS))

    async def disconnect(self, code):
        if self.poller is not None:
            self.poller.cancel()
        if self.joined:
            await self.channel_layer.group_discard(COMPLIANCE_GROUP, self.channel_name)

    async def receive_json(self, content, **kwargs):
        """Clients only listen; anything they send is ignored."""

    async def budget_changed(self, message):
        await self.send_snapshot(changed=[message["dataset"]])

    async def poll_database(self, seconds: float):
        while True:
            await asyncio.sleep(seconds)
            if await database_sync_to_async(compliance_version)() != self.version:
                await self.send_snapshot(changed=[])

    async def send_snapshot(self, *, changed: list[int]):
        async with self.sending:
            version, snapshot = await database_sync_to_async(_versioned_snapshot)()
            self.version = version
            if snapshot == self.last_sent and not changed:
                return
            self.last_sent = snapshot
            await self.send_json({"type": "snapshot", "changed": changed, "time": timezone.now().isoformat(),
                                  **snapshot})


def _versioned_snapshot() -> tuple[tuple, dict]:
    """The fingerprint first: a change racing the read makes the next poll read again."""
    return compliance_version(), compliance_snapshot()
