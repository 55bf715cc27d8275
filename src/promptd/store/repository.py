"""Reads and the few synchronous writes (keys, uploads, feedback). Message records go through the recorder."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from promptd.domain.ids import ADMIN_KEY_PREFIX, DATASET_KEY_PREFIX, hash_key, keys_equal, looks_like_key, new_key
from promptd.domain.limits import Limits
from promptd.store.recorder import Row, write_rows
from promptd.store.tables import (
    api_keys,
    comparisons,
    end_users,
    feedbacks,
    files,
    messages,
    metric_feedback,
    outcomes,
    usage_daily,
)
from promptd.uuids import new_uuid

__all__ = ["ADMIN_PROJECT", "KEY_SHOWN", "KeyInfo", "Repository"]

KEY_SHOWN = 12  # leading characters of a key kept in clear, to recognise it in listings
ADMIN_PROJECT = "*"  # the `project` of an admin key: it reaches every project, through the management API only


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    project: str
    name: str
    prefix: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    role: str = "app"  # "app": the two API faces, for `project`; "admin": the management API and console;
    # "dataset": the Knowledge (dataset) API
    limits: Limits = field(default_factory=Limits)

    @property
    def admin(self) -> bool:
        return self.role == "admin"

    def state(self, now: float) -> str:
        """ "active", "expired" or "revoked", for listings."""
        return "revoked" if self.revoked_at is not None else "expired" if not self.usable(now) else "active"

    def usable(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


def _key(row: Any) -> KeyInfo:
    return KeyInfo(
        row.id,
        row.project,
        row.name,
        row.prefix,
        row.created_at,
        row.expires_at,
        row.revoked_at,
        row.role,
        Limits.from_json(row.limits),
    )


def end_user_row(end_user_id: str, project: str, user: str, now: float) -> Row:
    return Row(
        end_users,
        {
            "id": end_user_id,
            "project": project,
            "external_user_id": user,
            "type": "service_api",
            "is_anonymous": user == "DEFAULT-USER",
            "created_at": now,
            "updated_at": now,
        },
        upsert_ignore=True,
    )


class Repository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # --- keys -----------------------------------------------------------------------------------------------------

    async def create_key(
        self,
        project: str,
        *,
        name: str = "",
        expires_at: float | None = None,
        role: str = "app",
        limits: Limits | None = None,
    ) -> tuple[str, KeyInfo]:
        """A new key (returned once, stored as its hash). An admin key's project is ADMIN_PROJECT."""
        if role == "admin":
            key, project = new_key(ADMIN_KEY_PREFIX), ADMIN_PROJECT
        elif role == "dataset":  # every knowledge base, through the dataset API only (as Dify's dataset keys)
            key, project = new_key(DATASET_KEY_PREFIX), ADMIN_PROJECT
        else:
            key = new_key()
        limits = limits or Limits()
        info = KeyInfo(new_uuid(), project, name, key[:KEY_SHOWN], time.time(), expires_at, None, role, limits)
        async with self.engine.begin() as conn:
            await conn.execute(
                api_keys.insert().values(
                    id=info.id,
                    project=project,
                    name=name,
                    key_hash=hash_key(key),
                    prefix=info.prefix,
                    created_at=info.created_at,
                    expires_at=expires_at,
                    role=role,
                    limits=limits.to_json(),
                )
            )
        return key, info

    async def find_key(self, key: str) -> KeyInfo | None:
        digest = hash_key(key)
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(api_keys).where(api_keys.c.key_hash == digest))).first()
        # the lookup is by hash (what an attacker can time is a hash of their own guess); compare again in
        # constant time, so no code path compares secrets byte by byte
        return _key(row) if row is not None and keys_equal(row.key_hash, digest) else None

    async def list_keys(self, project: str | None = None) -> list[KeyInfo]:
        q = select(api_keys).order_by(api_keys.c.created_at)
        if project is not None:
            q = q.where(api_keys.c.project == project)
        async with self.engine.connect() as conn:
            return [_key(r) for r in (await conn.execute(q)).all()]

    async def count_keys(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(api_keys))).scalar_one())

    async def revoke_key(self, ref: str, *, by_id_only: bool = False) -> KeyInfo | None:
        """Revoke the key with this id, or (unless `by_id_only`) this exact key, or else the only key whose shown
        prefix starts with `ref` (at most KEY_SHOWN characters: a mistyped full key never matches another key by
        its prefix)."""
        async with self.engine.begin() as conn:
            exact = api_keys.c.id == ref
            if looks_like_key(ref) and not by_id_only:
                exact = exact | (api_keys.c.key_hash == hash_key(ref))
            rows = (await conn.execute(select(api_keys).where(exact))).all()
            if not rows and 0 < len(ref) <= KEY_SHOWN and not by_id_only:
                rows = (
                    await conn.execute(select(api_keys).where(api_keys.c.prefix.startswith(ref, autoescape=True)))
                ).all()
            if len(rows) != 1:
                return None
            r = rows[0]
            revoked = r.revoked_at or time.time()  # revoking twice keeps the first time
            await conn.execute(
                update(api_keys)
                .where(api_keys.c.id == r.id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=revoked)
            )
        return dataclasses.replace(_key(r), revoked_at=revoked)

    async def set_key_limits(self, ref: str, limits: Limits) -> KeyInfo | None:
        """Replace the limits of the app key with this id (or this exact key); None when no app key matches (admin
        keys have no limits)."""
        async with self.engine.begin() as conn:
            match = api_keys.c.id == ref
            if looks_like_key(ref):
                match = match | (api_keys.c.key_hash == hash_key(ref))
            rows = (await conn.execute(select(api_keys).where(match, api_keys.c.role == "app"))).all()
            if len(rows) != 1:
                return None
            await conn.execute(update(api_keys).where(api_keys.c.id == rows[0].id).values(limits=limits.to_json()))
        return dataclasses.replace(_key(rows[0]), limits=limits)

    # --- usage ----------------------------------------------------------------------------------------------------

    async def spent(self, scope: str, ident: str, window: str, window_id: str) -> int:
        """Pico-units spent by a key (scope "key", its id) or a project in a UTC day ('2026-12-01') or month
        ('2026-12'), from the daily rollups: what budgets start from after a restart."""
        column = usage_daily.c.key_id if scope == "key" else usage_daily.c.project
        day = usage_daily.c.day == window_id if window == "day" else usage_daily.c.day.startswith(window_id + "-")
        q = select(func.coalesce(func.sum(usage_daily.c.cost_pico), 0)).where(column == ident, day)
        async with self.engine.connect() as conn:
            return int((await conn.execute(q)).scalar_one())

    async def key_spend(self, *, day: str, month: str, key_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Per key and currency, what was spent in UTC day `day` ('2026-12-01') and month `month` ('2026-12')
        from the daily rollups (what budgets are checked against): rows (key_id, currency, day_requests,
        day_tokens, day_cost_pico, month_requests, month_tokens, month_cost_pico)."""
        u = usage_daily.c
        today = u.day == day
        tokens = u.prompt_tokens + u.completion_tokens

        def on_day(col: Any) -> Any:
            return func.sum(case((today, col), else_=0))

        q = (
            select(
                u.key_id,
                u.currency,
                on_day(u.requests).label("day_requests"),
                on_day(tokens).label("day_tokens"),
                on_day(u.cost_pico).label("day_cost_pico"),
                func.sum(u.requests).label("month_requests"),
                func.sum(tokens).label("month_tokens"),
                func.sum(u.cost_pico).label("month_cost_pico"),
            )
            .where(u.day.startswith(month + "-"), u.key_id != "")
            .group_by(u.key_id, u.currency)
        )
        if key_ids is not None:  # what each key spent in every project (as its budgets count), not one project's
            q = q.where(u.key_id.in_(list(key_ids)))
        async with self.engine.connect() as conn:
            return [
                {k: (v if k in ("key_id", "currency") else int(v or 0)) for k, v in r._mapping.items()}
                for r in (await conn.execute(q)).all()
            ]

    async def usage(
        self, *, since: str, until: str, project: str | None = None, key_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Daily usage rows (day, project, key_id, model, currency, requests, errors, tokens, cost_pico) between
        two UTC days inclusive, oldest first."""
        q = select(usage_daily).where(usage_daily.c.day >= since, usage_daily.c.day <= until)
        if project is not None:
            q = q.where(usage_daily.c.project == project)
        if key_id is not None:
            q = q.where(usage_daily.c.key_id == key_id)
        q = q.order_by(usage_daily.c.day, usage_daily.c.project, usage_daily.c.key_id, usage_daily.c.model)
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in (await conn.execute(q)).all()]

    async def purge_messages(self, before: float, *, batch: int = 5000, pause: float = 0.05) -> int:
        """Delete messages created before `before` (Unix seconds), `batch` rows per transaction with a pause
        between, so neither SQLite's writer nor PostgreSQL's table is held long. Their feedback goes with them;
        the daily rollups stay. Returns how many messages were deleted."""
        total = 0
        while True:
            async with self.engine.begin() as conn:
                ids = (
                    (
                        await conn.execute(
                            select(messages.c.id)
                            .where(messages.c.created_at < before)
                            .order_by(messages.c.created_at)
                            .limit(batch)
                        )
                    )
                    .scalars()
                    .all()
                )
                if not ids:
                    return total
                await conn.execute(delete(feedbacks).where(feedbacks.c.message_id.in_(ids)))
                await conn.execute(delete(messages).where(messages.c.id.in_(ids)))
            total += len(ids)
            if len(ids) < batch:
                return total
            await asyncio.sleep(pause)

    # --- end users ------------------------------------------------------------------------------------------------

    async def ensure_end_user(self, end_user_id: str, project: str, user: str) -> None:
        async with self.engine.begin() as conn:
            await write_rows(conn, [end_user_row(end_user_id, project, user, time.time())])

    async def get_end_user(self, end_user_id: str, project: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(end_users).where(end_users.c.id == end_user_id, end_users.c.project == project)
                )
            ).first()
        return dict(row._mapping) if row else None

    # --- messages -------------------------------------------------------------------------------------------------

    async def get_message(self, message_id: str, project: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(messages).where(messages.c.id == message_id, messages.c.project == project))
            ).first()
        return dict(row._mapping) if row else None

    async def list_messages(self, project: str, *, limit: int = 100) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(messages)
                    .where(messages.c.project == project)
                    .order_by(messages.c.created_at.desc())
                    .limit(limit)
                )
            ).all()
        return [dict(r._mapping) for r in rows]

    # --- feedback -------------------------------------------------------------------------------------------------

    async def set_feedback(
        self, *, project: str, message_id: str, end_user_id: str, rating: str | None, content: str | None
    ) -> bool:
        """Create, update or (rating None) revoke this user's feedback. False when revoking nothing.

        One statement each way (an upsert on the (message, user) unique key, or a delete), so concurrent
        requests for the same message and user cannot both insert."""
        now = time.time()
        async with self.engine.begin() as conn:
            if rating is None:
                result = await conn.execute(
                    delete(feedbacks).where(
                        feedbacks.c.message_id == message_id, feedbacks.c.from_end_user_id == end_user_id
                    )
                )
                return bool(result.rowcount)
            dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
            upsert = dialect_insert(feedbacks).values(
                id=new_uuid(),
                project=project,
                message_id=message_id,
                rating=rating,
                content=content,
                from_source="user",
                from_end_user_id=end_user_id,
                created_at=now,
                updated_at=now,
            )
            await conn.execute(
                upsert.on_conflict_do_update(
                    index_elements=[feedbacks.c.message_id, feedbacks.c.from_end_user_id],
                    set_={"rating": rating, "content": content, "updated_at": now},
                )
            )
        return True

    async def list_feedbacks(self, project: str, *, page: int, limit: int) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(feedbacks)
                    .where(feedbacks.c.project == project)
                    .order_by(feedbacks.c.created_at.desc())
                    .offset((page - 1) * limit)
                    .limit(limit)
                )
            ).all()
        return [dict(r._mapping) for r in rows]

    # --- files ----------------------------------------------------------------------------------------------------

    async def add_file(self, values: dict[str, Any]) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(files.insert().values(**values))

    async def get_file(self, file_id: str, project: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(files).where(files.c.id == file_id, files.c.project == project))).first()
        return dict(row._mapping) if row else None

    # --- the chat API: sessions, metrics, comparisons, outcomes, imports -----------------------------------------

    async def session_turns(self, project: str, session_id: str) -> list[dict[str, Any]]:
        q = (
            select(messages)
            .where(messages.c.project == project, messages.c.session_id == session_id)
            .order_by(messages.c.created_at, messages.c.choice_index)
        )
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in (await conn.execute(q)).all()]

    async def add_metric_feedback(self, values: dict[str, Any]) -> str:
        row = {"id": new_uuid(), "created_at": time.time(), **values}
        async with self.engine.begin() as conn:
            await conn.execute(metric_feedback.insert().values(**row))
        return str(row["id"])

    async def metric_scored(self, project: str, metric: str) -> tuple[bool, bool]:
        """Whether the project's metric has any direct score, and any comparison."""
        direct = select(metric_feedback.c.id).where(
            metric_feedback.c.project == project, metric_feedback.c.metric == metric
        )
        compared = select(comparisons.c.id).where(comparisons.c.project == project, comparisons.c.metric == metric)
        async with self.engine.connect() as conn:
            has_direct = (await conn.execute(direct.limit(1))).first() is not None
            has_compared = (await conn.execute(compared.limit(1))).first() is not None
        return has_direct, has_compared

    async def add_comparison(self, values: dict[str, Any]) -> str:
        row = {"id": new_uuid(), "created_at": time.time(), **values}
        async with self.engine.begin() as conn:
            await conn.execute(comparisons.insert().values(**row))
        return str(row["id"])

    async def add_outcome(self, values: dict[str, Any]) -> str:
        row = {"id": new_uuid(), "created_at": time.time(), **values}
        async with self.engine.begin() as conn:
            await conn.execute(outcomes.insert().values(**row))
        return str(row["id"])

    async def import_interaction(self, message: dict[str, Any], metric_values: list[dict[str, Any]]) -> list[str]:
        """Store an imported interaction and its metric feedback in one transaction; the feedback ids."""
        rows = [
            {
                "id": new_uuid(),
                "created_at": message["created_at"],
                "project": message["project"],
                "completion_id": message["id"],
                **fb,
            }
            for fb in metric_values
        ]
        async with self.engine.begin() as conn:
            await conn.execute(messages.insert().values(**message))
            if rows:
                await conn.execute(metric_feedback.insert(), rows)
        return [str(r["id"]) for r in rows]

    async def campaign_requests(self, project: str, campaign: str) -> list[dict[str, Any]]:
        cols = [
            messages.c.id,
            messages.c.model,
            messages.c.status,
            messages.c.latency,
            messages.c.ttft,
            messages.c.total_price,
            messages.c.currency,
        ]
        q = select(*cols).where(messages.c.project == project, messages.c.campaign == campaign)
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in (await conn.execute(q)).all()]

    async def campaign_metric_values(self, project: str, campaign: str, metric: str) -> list[tuple[str, float]]:
        """(model, value) for every metric feedback on a completion of this campaign."""
        q = (
            select(messages.c.model, metric_feedback.c.value)
            .join(messages, messages.c.id == metric_feedback.c.completion_id)
            .where(messages.c.project == project, messages.c.campaign == campaign)
            .where(metric_feedback.c.metric == metric)
        )
        async with self.engine.connect() as conn:
            return [(r.model, float(r.value)) for r in (await conn.execute(q)).all()]
