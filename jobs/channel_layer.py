"""The embedded mode's channel layer: in memory, and safe to publish to from worker threads.

Channels' InMemoryChannelLayer keeps asyncio queues that belong to the server's event loop; a put
from the in-process Celery worker's thread (which runs its own loop) would not wake the consumer
reliably. This layer remembers the loop its consumers receive on and hands sends from any other
loop over to it.
"""
import asyncio

from channels.layers import InMemoryChannelLayer


class EmbeddedChannelLayer(InMemoryChannelLayer):
    _consumer_loop: asyncio.AbstractEventLoop | None = None

    async def receive(self, channel):
        self._consumer_loop = asyncio.get_running_loop()
        return await super().receive(channel)

    async def group_send(self, group, message):
        target = self._consumer_loop
        if target is None or target.is_closed() or target is asyncio.get_running_loop():
            return await super().group_send(group, message)
        parent_send = super().group_send
        future = asyncio.run_coroutine_threadsafe(parent_send(group, message), target)
        await asyncio.wrap_future(future)
