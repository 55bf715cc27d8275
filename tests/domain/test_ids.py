"""Key formats, their at-rest hash, and stable end-user ids."""

from __future__ import annotations

import re

from promptd.domain.ids import end_user_id, hash_key, keys_equal, looks_like_key, new_key


def test_keys_look_like_difys_and_are_unique() -> None:
    keys = {new_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(re.fullmatch(r"app-[A-Za-z0-9]{24,}", k) and looks_like_key(k) for k in keys)
    assert not looks_like_key("app-short") and not looks_like_key("sk-" + "a" * 40)


def test_keys_are_stored_as_a_stable_hash_not_the_key() -> None:
    key = new_key()
    assert hash_key(key) == hash_key(key) and key not in hash_key(key) and len(hash_key(key)) == 64
    assert keys_equal(hash_key(key), hash_key(key)) and not keys_equal(hash_key(key), hash_key(new_key()))


def test_end_user_ids_are_stable_per_project_and_user() -> None:
    assert end_user_id("demo", "abc") == end_user_id("demo", "abc")
    assert end_user_id("demo", "abc") != end_user_id("other", "abc") != end_user_id("demo", "abd")
