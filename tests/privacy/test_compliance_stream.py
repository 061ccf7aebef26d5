"""The compliance dashboard's websocket `/ws/compliance/`: officers only, a snapshot on
connect, a fresh one after every ledger change, and the periodic re-read for changes whose
notification never came."""
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from ksg_web.asgi import application
from privacy.models import LedgerEntry
from privacy.services import budget_commit, budget_release, budget_reserve, user_create
from tests.privacy.factories import make_dataset, make_dp_job

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def notifications_only(settings):
    settings.KSG_STREAM_POLL_SECONDS = 0


@database_sync_to_async
def make_user(username: str, role: str):
    return user_create(username=username, role=role, password="a-long-password-1")


@database_sync_to_async
def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


async def open_feed(user=None, *, origin: bytes = b"http://localhost") -> WebsocketCommunicator:
    headers = [(b"origin", origin), (b"host", b"localhost")]
    if user is not None:
        headers.append((b"cookie", await session_cookie(user)))
    return WebsocketCommunicator(application, "/ws/compliance/", headers=headers)


def budget_of(snapshot: dict, dataset_id: int) -> dict:
    return next(row for row in snapshot["budgets"] if row["id"] == dataset_id)


async def test_the_feed_refuses_anonymous_users_data_scientists_and_foreign_origins():
    assert await (await open_feed()).connect() == (False, 4401)
    scientist = await make_user("olive", "data_scientist")
    assert await (await open_feed(scientist)).connect() == (False, 4403)
    officer = await make_user("cleo", "compliance_officer")
    connected, _ = await (await open_feed(officer, origin=b"http://evil.example")).connect()
    assert not connected


async def test_an_officer_gets_a_snapshot_then_an_update_after_each_ledger_change():
    owner = await make_user("olive", "data_scientist")
    officer = await make_user("cleo", "compliance_officer")
    dataset = await database_sync_to_async(make_dataset)(owner, epsilon_limit="10")
    job = await database_sync_to_async(make_dp_job)(owner, dataset)

    feed = await open_feed(officer)
    assert (await feed.connect())[0]
    first = await feed.receive_json_from(timeout=5)
    assert first["type"] == "snapshot" and budget_of(first, dataset.pk)["reserved"] == "0.000000"

    await database_sync_to_async(budget_reserve)(job=job, epsilon=3, actor=owner)
    update = await feed.receive_json_from(timeout=5)
    assert update["changed"] == [dataset.pk]
    assert (budget_of(update, dataset.pk)["reserved"], budget_of(update, dataset.pk)["left"]) == ("3.000000", "7.000000")

    await database_sync_to_async(budget_commit)(job=job, epsilon=2.5, delta=1e-5, mechanism={}, actor=owner)
    await database_sync_to_async(budget_release)(job=job, actor=owner)
    latest = None
    while latest is None or budget_of(latest, dataset.pk)["reserved"] != "0.000000":
        latest = await feed.receive_json_from(timeout=5)
    assert (budget_of(latest, dataset.pk)["spent"], budget_of(latest, dataset.pk)["left"]) == ("2.500000", "7.500000")
    burndown = next(series for series in latest["burndown"] if series["dataset"] == dataset.pk)
    assert [point["spent"] for point in burndown["points"]] == ["0.000000", "2.500000"]
    await feed.disconnect()


async def test_an_administrator_is_let_in_too():
    admin = await make_user("root", "admin")
    feed = await open_feed(admin)
    assert (await feed.connect())[0]
    assert (await feed.receive_json_from(timeout=5))["type"] == "snapshot"
    await feed.disconnect()


async def test_a_change_without_a_notification_still_arrives_by_the_periodic_reread(settings):
    settings.KSG_STREAM_POLL_SECONDS = 0.2
    owner = await make_user("olive", "data_scientist")
    officer = await make_user("cleo", "compliance_officer")
    dataset = await database_sync_to_async(make_dataset)(owner)
    job = await database_sync_to_async(make_dp_job)(owner, dataset)
    feed = await open_feed(officer)
    assert (await feed.connect())[0]
    await feed.receive_json_from(timeout=5)

    @database_sync_to_async
    def write_as_another_process():  # a row only: no channel-layer message at all
        LedgerEntry.objects.create(budget=dataset.budget, job=job, kind="reserve", actor=owner,
                                   epsilon=Decimal("1.25"), delta=1e-4, reason="written elsewhere")

    await write_as_another_process()
    update = await feed.receive_json_from(timeout=5)
    assert budget_of(update, dataset.pk)["reserved"] == "1.250000" and update["changed"] == []
    assert await feed.receive_nothing(timeout=0.6)  # nothing changed since: nothing sent
    await feed.disconnect()
