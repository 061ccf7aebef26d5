"""API tokens: a random key shown once at creation, stored only as its sha256, revocable.

A key is 40 letters and digits (about 238 bits); its first 8 characters (the prefix) name the
token on the token page and in `ksg_token_revoke`, and are unique.
"""
import hashlib
import logging
import secrets
import string
import unicodedata
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from .models import ApiToken

logger = logging.getLogger(__name__)

KEY_ALPHABET = string.ascii_letters + string.digits  # no '-': a key never looks like a command-line option
KEY_LENGTH = 40
PREFIX_LENGTH = 8
NAME_MAX_LENGTH = 100
LAST_USED_RESOLUTION = timedelta(seconds=60)  # last_used_at is written at most once a minute per token


class ApiTokenError(ValueError):
    """A token request that cannot be carried out; the message says why."""


def api_key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def api_token_create(*, user, name: str) -> tuple[ApiToken, str]:
    """A new token for `user`: (the row, the key). The key is not stored and cannot be shown again."""
    name = (name or "").strip()
    if not name:
        raise ApiTokenError("give the token a name that says what it is for, e.g. 'analysis notebook'")
    if len(name) > NAME_MAX_LENGTH:
        raise ApiTokenError(f"the token name is {len(name)} characters; the limit is {NAME_MAX_LENGTH}")
    if any(unicodedata.category(character) == "Cc" for character in name):
        raise ApiTokenError("the token name contains control characters; remove them")
    if not user.is_active:
        raise ApiTokenError(f"user {user.get_username()!r} is inactive and cannot have API tokens")
    for _ in range(5):  # a prefix collision (48 bits) is rare; draw again
        key = "".join(secrets.choice(KEY_ALPHABET) for _ in range(KEY_LENGTH))
        try:
            with transaction.atomic():
                token = ApiToken.objects.create(user=user, name=name, prefix=key[:PREFIX_LENGTH],
                                                key_sha256=api_key_digest(key))
        except IntegrityError:
            continue
        logger.info("API token %s created for %s", token.prefix, user.get_username())
        return token, key
    raise ApiTokenError("could not draw an unused token prefix; try again")


@transaction.atomic
def api_token_revoke(*, token: ApiToken) -> ApiToken:
    """Revoke the token from now on (revoking a revoked token changes nothing)."""
    token = ApiToken.objects.select_for_update().get(pk=token.pk)
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        logger.info("API token %s of %s revoked", token.prefix, token.user_id)
    return token


def api_token_authenticate(*, key: str):
    """The active user a key belongs to; raises ApiTokenError (the message says why) for an
    unknown or revoked key or an inactive user. Notes the time of use."""
    token = ApiToken.objects.select_related("user").filter(key_sha256=api_key_digest(key)).first()
    if token is None:
        raise ApiTokenError("unknown API token; create one on the API tokens page or with ksg_token_add")
    if token.revoked_at is not None:
        raise ApiTokenError(f"API token {token.prefix}… was revoked on {token.revoked_at:%Y-%m-%d %H:%M} UTC; "
                            "create a new one")
    if not token.user.is_active:
        raise ApiTokenError(f"the user of API token {token.prefix}… is inactive")
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user


def api_tokens_of(user) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user)
