"""Key formats, their at-rest hash, and stable end-user ids."""

from __future__ import annotations

import re
import uuid

from promptd.domain.ids import end_user_id, hash_key, keys_equal, looks_like_key, new_key
from promptd.uuids import new_uuid


def test_keys_are_app_dash_and_at_least_24_alphanumerics() -> None:
    keys = [new_key() for _ in range(200)]
    assert all(re.fullmatch(r"app-[A-Za-z0-9]{24,}", k) for k in keys)
    assert all(looks_like_key(k) for k in keys)


def test_every_new_key_is_different() -> None:
    assert len({new_key() for _ in range(1000)}) == 1000


def test_only_key_shaped_tokens_look_like_keys() -> None:
    assert looks_like_key("app-" + "a" * 24)
    assert not looks_like_key("app-" + "a" * 23)
    assert not looks_like_key("app-short")
    assert not looks_like_key("sk-" + "a" * 40)
    assert not looks_like_key("")


def test_a_keys_hash_is_stable_and_is_not_the_key() -> None:
    key = new_key()
    digest = hash_key(key)
    assert hash_key(key) == digest
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert key not in digest and key[4:] not in digest
    assert hash_key(new_key()) != digest


def test_keys_are_compared_exactly() -> None:
    a, b = hash_key(new_key()), hash_key(new_key())
    assert keys_equal(a, a) and not keys_equal(a, b) and not keys_equal(a, a[:-1])


def test_end_user_ids_are_stable_uuids_per_project_and_user() -> None:
    first = end_user_id("demo", "abc-123")
    assert end_user_id("demo", "abc-123") == first
    assert str(uuid.UUID(first)) == first


def test_end_user_ids_differ_across_projects_and_users() -> None:
    ids = {end_user_id(p, u) for p in ("demo", "shop") for u in ("abc", "abd", "DEFAULT-USER")}
    assert len(ids) == 6
    # the project and the user cannot run into each other
    assert end_user_id("ab", "c") != end_user_id("a", "bc")


def test_new_uuids_are_version_4_and_all_different() -> None:
    ids = [new_uuid() for _ in range(5000)]  # more than one block of randomness
    assert len(set(ids)) == len(ids)
    assert all(
        uuid.UUID(i).version == 4 and uuid.UUID(i).variant == uuid.RFC_4122 and str(uuid.UUID(i)) == i for i in ids
    )
