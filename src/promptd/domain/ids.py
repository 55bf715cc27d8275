"""Identifier formats: API keys (Dify's `app-` + random), their at-rest hash, stable end-user ids. Pure: fresh
random UUIDs, which need state (a buffer of OS randomness), are `promptd.uuids.new_uuid`."""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import string
import uuid

__all__ = [
    "ADMIN_KEY_PREFIX", "DATASET_KEY_PREFIX", "KEY_PREFIX", "app_uuid", "conversation_id", "end_user_id",
    "hash_key", "keys_equal", "looks_like_key", "metric_uuid", "new_key",
]  # fmt: skip

KEY_PREFIX = "app-"
ADMIN_KEY_PREFIX = "adm-"  # admin keys: the management API and the console
DATASET_KEY_PREFIX = "dataset-"  # dataset keys: Dify's Knowledge (dataset) API, every knowledge base (as Dify's)
KEY_ALPHABET = string.ascii_letters + string.digits
KEY_RANDOM_CHARS = 32
END_USER_NAMESPACE = uuid.UUID("6f0b3c1e-5d8a-4f0e-9a57-2f1f0d7c9b11")


def new_key(prefix: str = KEY_PREFIX) -> str:
    """A fresh API key: `app-` (`adm-` for an admin key, `dataset-` for a dataset key) + 32 random
    alphanumerics (190 bits)."""
    return prefix + "".join(secrets.choice(KEY_ALPHABET) for _ in range(KEY_RANDOM_CHARS))


def hash_key(key: str) -> str:
    """The at-rest form of a key. Keys are long and random, so a plain SHA-256 is enough (no stretching)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def keys_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def looks_like_key(token: str) -> bool:
    return token.startswith((KEY_PREFIX, ADMIN_KEY_PREFIX, DATASET_KEY_PREFIX)) and len(token) >= len(KEY_PREFIX) + 24


@functools.lru_cache(maxsize=65_536)  # a name-based UUID (SHA-1) per request otherwise: callers repeat
def end_user_id(project: str, external_user_id: str) -> str:
    """The id of the end user `external_user_id` of `project`: stable, so no lookup is needed to know it."""
    return str(uuid.uuid5(END_USER_NAMESPACE, f"{project}\x00{external_user_id}"))


def app_uuid(project: str) -> str:
    """The UUID that stands for the app `project` where Dify's wire has an `app_id` UUID: stable, no lookup."""
    return str(uuid.uuid5(END_USER_NAMESPACE, f"app\x00{project}"))


def metric_uuid(project: str, metric: str) -> str:
    """The UUID of a project's catalog metric where Adaptive's wire has a metric `id`: stable, no lookup."""
    return str(uuid.uuid5(END_USER_NAMESPACE, f"metric\x00{project}\x00{metric}"))


def conversation_id(message_id: str) -> str:
    """The conversation of a completion message where Dify's wire has one: Dify opens a conversation per
    completion message; promptd has none, so a stable UUID is derived from the message's."""
    return str(uuid.uuid5(END_USER_NAMESPACE, f"conversation\x00{message_id}"))
