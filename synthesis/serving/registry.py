"""Which deployments' engines are loaded in this process: each loaded on its first request (base
model + merged adapter, backend_load("auto")) and kept until its deployment stops."""
import logging
import threading

from django.conf import settings

from jobs.selectors import artifact_location

from synthesis.lm.backends import backend_load
from .servers import ServingEngine, serving_engine_create

logger = logging.getLogger(__name__)


class DeploymentStopped(LookupError):
    """The deployment was stopped in this process: its model is not loaded again."""


_engines: dict[int, ServingEngine] = {}
_stopped: set[int] = set()  # deployments stopped here: a request admitted just before the stop finds no model
_engines_lock = threading.Lock()


def engine_for(deployment) -> ServingEngine:
    """The deployment's engine in this process, loaded on first use (base model + merged adapter)."""
    with _engines_lock:
        engine = _engines.get(deployment.pk)
        if engine is None:
            if deployment.pk in _stopped:
                raise DeploymentStopped(f"the deployment {deployment.name!r} was stopped")
            adapter = artifact_location(deployment.adapter_artifact)
            backend = backend_load(model_spec=deployment.base_model, adapter_path=adapter,
                                   cache_dir=settings.KSG_MODEL_CACHE)
            engine = _engines[deployment.pk] = serving_engine_create(backend)
            logger.info("deployment %s loaded (%s + adapter artifact %s) on %s", deployment.name,
                        deployment.base_model, deployment.adapter_artifact_id, type(engine).__name__)
        return engine


def engine_loaded(deployment_id: int) -> bool:
    """Whether this process holds the deployment's engine."""
    with _engines_lock:
        return deployment_id in _engines


def engine_unload(deployment_id: int, *, stopped: bool = False) -> bool:
    """Close the deployment's engine, if this process loaded it, and free its model's memory;
    requests it was still answering fail (EngineClosed). `stopped`: the deployment was stopped,
    so its model is not loaded here again. Returns whether an engine was loaded."""
    with _engines_lock:
        engine = _engines.pop(deployment_id, None)
        if stopped:
            _stopped.add(deployment_id)
    if engine is None:
        return False
    engine.close()  # outside the lock: other deployments' requests need not wait for it
    logger.info("deployment %s unloaded", deployment_id)
    return True


def engines_unload() -> None:
    """Close every loaded engine and forget which deployments stopped (tests)."""
    with _engines_lock:
        deployment_ids = list(_engines)
        _stopped.clear()
    for deployment_id in deployment_ids:
        engine_unload(deployment_id)
