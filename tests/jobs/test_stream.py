"""The websocket stream `/ws/jobs/<id>/`: access, backlog, live events and resuming."""
import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from jobs.models import Job, JobEvent
from jobs.services import job_event_record
from ksg_web.asgi import application

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def notifications_only(settings):
    """Most tests here are about the notification path: polling off unless a test turns it on."""
    settings.KSG_STREAM_POLL_SECONDS = 0


@database_sync_to_async
def make_user(username: str, *, staff: bool = False):
    from privacy.services import user_create

    return user_create(username=username, role="compliance_officer" if staff else "data_scientist",
                       password="a-long-password-1")


@database_sync_to_async
def make_job(owner) -> Job:
    # Created directly, not submitted: these tests are about the stream, not the worker.
    return Job.objects.create(kind="selftest", owner=owner, params={}, celery_task_id="stream-test")


@database_sync_to_async
def record(job: Job, step: int) -> None:
    job_event_record(job_id=job.pk, kind=JobEvent.Kind.METRIC, payload={"step": step})


@database_sync_to_async
def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


async def open_stream(job: Job, *, user=None, last_seq: int | None = None) -> WebsocketCommunicator:
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    if user is not None:
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={await session_cookie(user)}".encode()))
    query = "" if last_seq is None else f"?last_seq={last_seq}"
    return WebsocketCommunicator(application, f"/ws/jobs/{job.pk}/{query}", headers=headers)


async def receive_seqs(communicator: WebsocketCommunicator, count: int) -> list[int]:
    return [(await communicator.receive_json_from(timeout=5))["seq"] for _ in range(count)]


async def test_owner_gets_backlog_then_live_events_then_exactly_the_missed_ones_on_resume():
    owner = await make_user("ada")
    job = await make_job(owner)
    for step in (1, 2, 3):
        await record(job, step)

    stream = await open_stream(job, user=owner)
    connected, _ = await stream.connect()
    assert connected
    assert await receive_seqs(stream, 3) == [1, 2, 3]  # backlog from the database
    await record(job, 4)
    await record(job, 5)
    live = [await stream.receive_json_from(timeout=5) for _ in range(2)]
    assert [(event["seq"], event["payload"]["step"]) for event in live] == [(4, 4), (5, 5)]
    assert live[0]["type"] == "event" and live[0]["kind"] == "metric" and live[0]["job"] == job.pk
    await stream.disconnect()

    await record(job, 6)  # while the client is away
    await record(job, 7)
    resumed = await open_stream(job, user=owner, last_seq=5)
    assert (await resumed.connect())[0]
    assert await receive_seqs(resumed, 2) == [6, 7]
    assert await resumed.receive_nothing(timeout=0.3)
    await record(job, 8)
    assert await receive_seqs(resumed, 1) == [8]
    await resumed.disconnect()


async def test_a_live_event_after_an_unpublished_one_brings_the_gap_from_the_database():
    owner = await make_user("ada")
    job = await make_job(owner)
    stream = await open_stream(job, user=owner)
    assert (await stream.connect())[0]
    await record(job, 1)
    assert await receive_seqs(stream, 1) == [1]

    @database_sync_to_async
    def record_without_publishing():  # as if the notification was lost (e.g. Redis restarted)
        Job.objects.filter(pk=job.pk).update(last_event_seq=2)
        JobEvent.objects.create(job=job, seq=2, kind="metric", payload={"step": 2})

    await record_without_publishing()
    await record(job, 3)
    assert await receive_seqs(stream, 2) == [2, 3]
    await stream.disconnect()


async def test_anonymous_user_is_refused():
    job = await make_job(await make_user("ada"))
    stream = await open_stream(job)
    connected, code = await stream.connect()
    assert (connected, code) == (False, 4401)


async def test_user_without_access_is_refused_and_a_compliance_officer_is_let_in():
    job = await make_job(await make_user("ada"))
    stranger = await open_stream(job, user=await make_user("mallory"))
    assert await stranger.connect() == (False, 4403)

    await record(job, 1)
    staff = await open_stream(job, user=await make_user("root", staff=True))
    assert (await staff.connect())[0]
    assert await receive_seqs(staff, 1) == [1]
    await staff.disconnect()


async def test_a_resume_cursor_outside_the_database_range_is_refused():
    owner = await make_user("ada")
    job = await make_job(owner)
    for last_seq in (2**63, -1):  # jobs.ids.query_int: 0 to the largest 64-bit integer
        stream = await open_stream(job, user=owner, last_seq=last_seq)
        assert await stream.connect() == (False, 4400), last_seq


async def test_foreign_origin_is_refused():
    owner = await make_user("ada")
    job = await make_job(owner)
    cookie = f"{settings.SESSION_COOKIE_NAME}={await session_cookie(owner)}".encode()
    stream = WebsocketCommunicator(
        application, f"/ws/jobs/{job.pk}/", headers=[(b"origin", b"http://evil.example"), (b"cookie", cookie)]
    )
    connected, _ = await stream.connect()
    assert not connected


async def test_events_written_without_any_notification_still_arrive_by_polling(settings):
    settings.KSG_STREAM_POLL_SECONDS = 0.2
    owner = await make_user("ada")
    job = await make_job(owner)
    stream = await open_stream(job, user=owner)
    assert (await stream.connect())[0]

    @database_sync_to_async
    def write_as_another_process():  # rows only: no channel-layer message at all
        for seq in (1, 2):
            JobEvent.objects.create(job=job, seq=seq, kind="metric", payload={"step": seq})
        Job.objects.filter(pk=job.pk).update(last_event_seq=2)

    await write_as_another_process()
    assert await receive_seqs(stream, 2) == [1, 2]
    assert await stream.receive_nothing(timeout=0.5)
    await stream.disconnect()


def test_the_redis_channel_layer_waits_through_quiet_periods_longer_than_five_seconds():
    """An idle websocket's consumer blocks in the layer's receive; redis-py 8's default
    socket_timeout (5 s) would break it off and close every quiet stream with 1011."""
    import asyncio
    import os

    from channels_redis.core import RedisChannelLayer

    from ksg_web.settings import redis_channel_layer

    config = redis_channel_layer(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/15")["CONFIG"]

    async def quiet_then_message():
        redis_layer = RedisChannelLayer(**config)
        channel = await redis_layer.new_channel()
        waiting = asyncio.ensure_future(redis_layer.receive(channel))
        await asyncio.sleep(7)  # longer than redis-py's default read timeout
        assert not waiting.done() or waiting.exception() is None, waiting.exception()
        await redis_layer.send(channel, {"type": "job.event", "seq": 1})
        message = await asyncio.wait_for(waiting, timeout=5)
        await redis_layer.flush()
        return message

    assert asyncio.run(quiet_then_message())["seq"] == 1
