"""The live job stream: `/ws/jobs/<id>/?last_seq=N`.

On connect the consumer checks access, joins the job's group, sends every stored event after
`last_seq` (the backlog) and then live events in `seq` order. A live event that skips ahead of
what this client has seen makes it read the gap from the database first, so nothing is lost and
nothing is sent twice. While connected it also re-reads the database every
KSG_STREAM_POLL_SECONDS, so events whose notification never arrived (a Redis restart, or a job
run by another process in the embedded mode, whose in-memory layer this server cannot hear)
still reach the client.
"""
import asyncio
from urllib.parse import parse_qs

from django.conf import settings

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from .events import job_group
from .ids import query_int
from .selectors import BACKLOG_BATCH, job_events_after, job_visible_to

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_BAD_REQUEST = 4400


class JobStreamConsumer(AsyncJsonWebsocketConsumer):
    group_name: str | None = None
    poller: asyncio.Task | None = None

    async def connect(self):
        user = self.scope.get("user")
        self.job_id = int(self.scope["url_route"]["kwargs"]["job_id"])
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not await database_sync_to_async(job_visible_to)(user, self.job_id):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode())
        self.sent_seq = query_int(query.get("last_seq", ["0"])[0], minimum=0)
        if self.sent_seq is None:
            await self.close(code=CLOSE_BAD_REQUEST)
            return
        self.sending = asyncio.Lock()  # one writer at a time keeps seq order across live and polled events
        self.group_name = job_group(self.job_id)
        await self.channel_layer.group_add(self.group_name, self.channel_name)
        await self.accept()
        await self.send_backlog()
        if settings.KSG_STREAM_POLL_SECONDS > 0:
            self.poller = asyncio.create_task(self.poll_database(settings.KSG_STREAM_POLL_SECONDS))

    async def disconnect(self, code):
        if self.poller is not None:
            self.poller.cancel()
        if self.group_name:
            await self.channel_layer.group_discard(self.group_name, self.channel_name)

    async def poll_database(self, seconds: float):
        while True:
            await asyncio.sleep(seconds)
            await self.send_backlog()

    async def receive_json(self, content, **kwargs):
        """Clients only listen; anything they send is ignored."""

    async def job_event(self, message):
        event = message["event"]
        if event["seq"] <= self.sent_seq:
            return
        if event["seq"] > self.sent_seq + 1:
            await self.send_backlog()  # the gap, and this event, are already in the database
            return
        async with self.sending:
            await self.send_event(event)

    async def send_backlog(self):
        async with self.sending:
            while True:
                events = await database_sync_to_async(job_events_after)(job_id=self.job_id, after_seq=self.sent_seq)
                for event in events:
                    await self.send_event(event)
                if len(events) < BACKLOG_BATCH:
                    return

    async def send_event(self, event: dict):
        if event["seq"] != self.sent_seq + 1:
            return  # already sent (by the other path), or not next: the backlog will bring it
        await self.send_json({"type": "event", **event})
        self.sent_seq = event["seq"]
