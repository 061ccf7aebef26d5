"""Telling the compliance dashboard that a dataset's budget picture changed (a ledger row, a
limit, a run waiting for or leaving approval). Only a notification: the consumer then reads the
fresh balance from the database, the source of truth, so a lost message costs nothing but
latency (the consumer also re-reads periodically). A failure to publish is logged, never raised."""
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

COMPLIANCE_GROUP = "compliance"
BUDGET_CHANGED_MESSAGE_TYPE = "budget.changed"  # handled by ComplianceConsumer.budget_changed


def budget_changed_publish(*, dataset_id: int) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(COMPLIANCE_GROUP, {"type": BUDGET_CHANGED_MESSAGE_TYPE, "dataset": dataset_id})
    except Exception:  # Redis down, loop closing: the dashboard's periodic re-read catches up
        logger.warning("could not publish the budget change of dataset %s", dataset_id, exc_info=True)


def budget_changed_on_commit(*, dataset_id: int) -> None:
    """Publish once the current transaction commits (at once outside one): no one ever hears of
    a change that rolled back."""
    transaction.on_commit(lambda: budget_changed_publish(dataset_id=dataset_id))
