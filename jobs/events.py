"""Publishing job events to websocket listeners. The database row is the source of truth; this
only notifies, so a failure to publish is logged and never fails the job."""
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

EVENT_MESSAGE_TYPE = "job.event"  # handled by JobStreamConsumer.job_event


def job_group(job_id: int) -> str:
    return f"job.{job_id}"


def dataset_group(dataset_id: int) -> str:
    return f"dataset.{dataset_id}"


def event_publish(message: dict, *, dataset_id: int | None) -> None:
    """Send a recorded event (JobEvent.as_message()) to `job.<id>` and `dataset.<id>`."""
    layer = get_channel_layer()
    if layer is None:
        return
    groups = [job_group(message["job"])]
    if dataset_id is not None:
        groups.append(dataset_group(dataset_id))
    try:
        async_to_sync(_send_to_groups)(layer, groups, {"type": EVENT_MESSAGE_TYPE, "event": message})
    except Exception:  # Redis down, loop closing: listeners catch up from the database backlog
        logger.warning("could not publish event %s of job %s", message["seq"], message["job"], exc_info=True)


async def _send_to_groups(layer, groups: list[str], message: dict) -> None:
    for group in groups:
        await layer.group_send(group, message)
