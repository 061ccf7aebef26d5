"""Writes and reads for serving: deploying a run's model, the API keys that call it, the audit
of every request (the HTTP side is synthesis/serving/views.py, the model side synthesis/serving/servers.py
and registry.py)."""
import functools
import hashlib
import re
import secrets
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from jobs.models import Job
from evaluation.selectors import run_evaluated_model
from privacy.access import datasets_usable_by, is_admin, is_compliance_officer
from privacy.models import AuditEntry
from privacy.services import AccessRefused, audit_record

from ..models import CompletionAudit, Deployment, ServingKey
from .registry import engine_unload

KEY_PREFIX = "ksk-"


def serving_key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@transaction.atomic
def deployment_create(*, run: Job, actor, name: str | None = None, output_filter: str = "mask",
                      store_texts: bool = False, requests_per_minute: int = 60) -> Deployment:
    """Deploy the model a succeeded run's evaluation measured (as run_export exports it). One
    active deployment per run: an existing one is returned as it is. The dataset's users only."""
    evaluation = run_evaluated_model(run=run, actor=actor, use="deploy")
    existing = Deployment.objects.filter(run=run, active=True).first()
    if existing is not None:
        return existing
    if output_filter not in Deployment.OutputFilter.values:
        raise ValueError(f"output_filter must be one of {', '.join(Deployment.OutputFilter.values)}")
    name = name or f"ksg-run-{run.pk}"
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,99}", name):
        raise ValueError(f"a deployment name is lower-case letters, digits and dashes, not {name!r}")
    if Deployment.objects.filter(name=name).exists():
        raise ValueError(f"a deployment named {name!r} exists; choose another name")
    deployment = Deployment.objects.create(
        name=name, run=run, adapter_artifact_id=evaluation.params["adapter_artifact"],
        base_model=evaluation.params["base_model"], created_by=actor, output_filter=output_filter,
        store_texts=store_texts, requests_per_minute=requests_per_minute)
    audit_record(action=AuditEntry.Action.MODEL_DEPLOYED, actor=actor, dataset=run.dataset, job=run,
                 details={"deployment": name, "output_filter": output_filter, "store_texts": store_texts})
    return deployment


def deployments_visible_to(user):
    """Deployments a user may see: those of runs on datasets they use; every one for compliance
    officers and administrators."""
    if not user.is_authenticated:
        return Deployment.objects.none()
    deployments = Deployment.objects.select_related("run", "run__dataset", "created_by", "adapter_artifact")
    if is_compliance_officer(user) or is_admin(user):
        return deployments
    return deployments.filter(run__dataset__in=datasets_usable_by(user))


@transaction.atomic
def deployment_stop(*, deployment: Deployment, actor) -> Deployment:
    """Take a deployment offline: its keys stop working for it and an audit entry says who stopped
    it, in one transaction; once that commits, its engine is unloaded from this process, freeing
    the model's memory. The row is kept for the audit. Stopping it again writes nothing (it
    unloads this process's copy, if one is left)."""
    if not deployments_manageable_by(actor).filter(pk=deployment.pk).exists():
        raise AccessRefused("only an administrator or the dataset's owner stops this deployment")
    # the deployment row alone is locked (PostgreSQL locks no nullable side of an outer join)
    locked = Deployment.objects.select_for_update(of=("self",)).select_related("run", "run__dataset").get(pk=deployment.pk)
    if locked.active:
        locked.active = False
        locked.save(update_fields=["active"])
        audit_record(action=AuditEntry.Action.MODEL_UNDEPLOYED, actor=actor, dataset=locked.run.dataset, job=locked.run,
                     details={"deployment": locked.name, "deployment_id": locked.pk})
    deployment.active = False
    # after the commit: a stop that rolls back leaves the model serving
    transaction.on_commit(functools.partial(engine_unload, locked.pk, stopped=True))
    return deployment


def deployments_manageable_by(user):
    """Deployments whose keys a user may create and revoke: administrators all; a dataset's
    owner those of runs on it."""
    if not user.is_authenticated:
        return Deployment.objects.none()
    if is_admin(user):
        return Deployment.objects.all()
    return Deployment.objects.filter(run__dataset__owner=user)


@transaction.atomic
def serving_key_create(*, actor, name: str, deployments: list[Deployment]) -> tuple[ServingKey, str]:
    """A new API key granted `deployments`; returns it with the secret, shown this once."""
    if not deployments:
        raise ValueError("a key must be granted at least one deployment")
    allowed = set(deployments_manageable_by(actor).values_list("pk", flat=True))
    refused = [d.name for d in deployments if d.pk not in allowed]
    if refused:
        raise AccessRefused(f"only an administrator or the dataset's owner creates keys for {', '.join(refused)}")
    if not name or len(name) > 100:
        raise ValueError("a key needs a name of 1 to 100 characters (who or what uses it)")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ServingKey.objects.create(name=name, prefix=secret[:12], key_sha256=serving_key_digest(secret), created_by=actor)
    key.deployments.set(deployments)
    for deployment in deployments:
        audit_record(action=AuditEntry.Action.SERVING_KEY_CREATED, actor=actor, dataset=deployment.run.dataset, job=deployment.run,
                     details={"key": key.prefix, "name": name, "deployment": deployment.name})
    return key, secret


@transaction.atomic
def serving_key_revoke(*, key: ServingKey, actor) -> ServingKey:
    allowed = set(deployments_manageable_by(actor).values_list("pk", flat=True))
    if not set(key.deployments.values_list("pk", flat=True)) <= allowed:
        raise AccessRefused("only an administrator or the dataset's owner revokes this key")
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        for deployment in key.deployments.all():
            audit_record(action=AuditEntry.Action.SERVING_KEY_REVOKED, actor=actor, dataset=deployment.run.dataset,
                         job=deployment.run, details={"key": key.prefix, "deployment": deployment.name})
    return key


def serving_key_authenticate(secret: str) -> ServingKey | None:
    """The unrevoked key with this secret, or None."""
    if not secret.startswith(KEY_PREFIX):
        return None
    return ServingKey.objects.filter(key_sha256=serving_key_digest(secret), revoked_at__isnull=True).first()


def serving_key_over_limit(key: ServingKey, deployment: Deployment) -> bool:
    """Whether the key already made the deployment's requests_per_minute in the last 60 s."""
    since = timezone.now() - timedelta(seconds=60)
    return CompletionAudit.objects.filter(key=key, created_at__gte=since).count() >= deployment.requests_per_minute


def completion_audit_record(**fields) -> CompletionAudit:
    return CompletionAudit.objects.create(**fields)
