"""The read queries behind the management API: time-bucketed aggregates with percentiles, log search with
keyset pagination, sessions, and a campaign's metric over time. SQLite and PostgreSQL alike.

Every query is bounded: by a time range on `created_at` (indexed, alone or after `project`), by a row limit,
or by an indexed key (a message id, a session id, a campaign). Percentiles are computed in the database with
window functions (nearest rank: the smallest value with at least p % of the values at or below it), so only
two rows per group come back, never the values themselves. Costs are summed as floating-point numbers for
charts; each message keeps its exact decimal price.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Float, Integer, and_, case, cast, exists, func, literal, or_, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Select

from promptd.store.tables import feedbacks, messages, metric_feedback, rejections

__all__ = ["PERCENTILES", "REJECTION_GROUPS", "Analytics", "Cursor", "LogFilter", "LogPage", "Stats"]

PERCENTILES = (50, 95)
#: What rejected requests can be grouped by (the `rejections` table's key but its minute).
REJECTION_GROUPS = ("project", "key_id", "face", "status", "code")

#: The columns a log listing shows; the rest (inputs, prompt, answer, attempts) come with one message.
LIST_COLUMNS = (
    messages.c.id,
    messages.c.created_at,
    messages.c.project,
    messages.c.face,
    messages.c.model,
    messages.c.provider,
    messages.c.user,
    messages.c.session_id,
    messages.c.campaign,
    messages.c.status,
    messages.c.error_code,
    messages.c.labels,
    messages.c.tags,
    messages.c.query,
    func.substr(messages.c.answer, 1, 200).label("answer_preview"),
    messages.c.latency,
    messages.c.ttft,
    messages.c.total_tokens,
    messages.c.total_price,
    messages.c.currency,
    messages.c.request_id,
)


@dataclass(frozen=True, slots=True)
class LogFilter:
    """What a listing, a chart or a breakdown is restricted to; None (or empty) means any."""

    start: float | None = None  # created_at >= start (Unix seconds)
    end: float | None = None  # created_at < end
    project: str | None = None
    model: str | None = None
    user: str | None = None
    session_id: str | None = None
    status: str | None = None  # normal | stopped | error
    face: str | None = None  # dify | chat | import …
    campaign: str | None = None
    labels: tuple[tuple[str, str], ...] = ()  # every (name, value) must match
    tags: tuple[str, ...] = ()  # every tag must be present
    text: str | None = None  # a substring of the query or the answer (case-insensitive)
    request_id: str | None = None  # the X-Request-Id of the HTTP request that produced it


@dataclass(frozen=True, slots=True)
class Cursor:
    """Keyset position in the newest-first listing: the last row seen."""

    created_at: float
    id: str

    def encode(self) -> str:
        return f"{self.created_at!r}_{self.id}"

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """The cursor, or ValueError."""
        at, sep, ident = text.partition("_")
        if not sep or not ident:
            raise ValueError("not a cursor")
        return cls(float(at), ident)


@dataclass(frozen=True, slots=True)
class LogPage:
    rows: list[dict[str, Any]]
    next: Cursor | None


@dataclass(slots=True)
class Stats:
    """Counts, tokens, costs (per currency) and latency/TTFT percentiles (seconds) of one group of requests."""

    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: dict[str, float] = field(default_factory=dict)
    latency: dict[int, float | None] = field(default_factory=lambda: dict.fromkeys(PERCENTILES))
    ttft: dict[int, float | None] = field(default_factory=lambda: dict.fromkeys(PERCENTILES))


def _conditions(f: LogFilter, dialect: str) -> list[ColumnElement[bool]]:
    c = messages.c
    out: list[ColumnElement[bool]] = []
    if f.start is not None:
        out.append(c.created_at >= f.start)
    if f.end is not None:
        out.append(c.created_at < f.end)
    for col, value in (
        (c.project, f.project),
        (c.model, f.model),
        (c.user, f.user),
        (c.session_id, f.session_id),
        (c.status, f.status),
        (c.face, f.face),
        (c.campaign, f.campaign),
        (c.request_id, f.request_id),
    ):
        if value is not None:
            out.append(col == value)
    for name, value in f.labels:
        out.append(c.labels[name].as_string() == value)
    for tag in f.tags:
        out.append(_has_tag(tag, dialect))
    if f.text:
        pattern = "%" + f.text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        out.append(or_(func.lower(c.query).like(pattern, escape="\\"), func.lower(c.answer).like(pattern, escape="\\")))
    return out


def _has_tag(tag: str, dialect: str) -> ColumnElement[bool]:
    """`tag` is one of the message's tags (a JSON array of strings)."""
    if dialect == "postgresql":
        return cast(messages.c.tags, JSONB).contains([tag])
    each = func.json_each(messages.c.tags).table_valued("value")
    return exists(select(literal(1)).select_from(each).where(each.c.value == tag))


def _bucket(
    start: float, size: float, dialect: str, at: ColumnElement[Any] = messages.c.created_at
) -> ColumnElement[Any]:
    """The index of a row's time bucket: floor((at - start) / size); rows are filtered to >= start."""
    offset = (at - start) / size
    if dialect == "postgresql":
        return cast(func.floor(offset), Integer)
    return cast(offset, Integer)  # SQLite truncates toward zero, which is floor for the non-negative offsets


class Analytics:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    # --- aggregates -----------------------------------------------------------------------------------------------

    async def stats(
        self, f: LogFilter, group: Sequence[ColumnElement[Any]], *, limit: int = 1000, dearest: bool = False
    ) -> dict[tuple[Any, ...], Stats]:
        """Stats per group (the values of the `group` expressions), for the messages matching `f`; `dearest`:
        when there are more than `limit` groups, those that cost most."""
        where = _conditions(f, self.dialect)
        keys = [g.label(f"g{i}") for i, g in enumerate(group)]
        price = cast(messages.c.total_price, Float)
        counts = (
            select(
                *keys,
                messages.c.currency,
                func.count().label("requests"),
                func.sum(case((messages.c.status == "error", 1), else_=0)).label("errors"),
                func.sum(messages.c.prompt_tokens).label("prompt_tokens"),
                func.sum(messages.c.completion_tokens).label("completion_tokens"),
                func.sum(price).label("cost"),
            )
            .where(*where)
            .group_by(*group, messages.c.currency)
            .order_by(*([func.sum(price).desc()] if dearest else []))
            .limit(limit)
        )
        out: dict[tuple[Any, ...], Stats] = {}
        async with self.engine.connect() as conn:
            for r in (await conn.execute(counts)).all():
                key = tuple(r[: len(keys)])
                s = out.setdefault(key, Stats())
                s.requests += int(r.requests)
                s.errors += int(r.errors or 0)
                s.prompt_tokens += int(r.prompt_tokens or 0)
                s.completion_tokens += int(r.completion_tokens or 0)
                s.cost[r.currency] = s.cost.get(r.currency, 0.0) + float(r.cost or 0)
            for attr, col in (("latency", messages.c.latency), ("ttft", messages.c.ttft)):
                q = _percentile_query(col, group, where)
                for r in (await conn.execute(q)).all():
                    key = tuple(r[: len(group)])
                    if key not in out:
                        continue
                    for p in PERCENTILES:
                        if r.rn * 100 >= p * r.n and (r.rn - 1) * 100 < p * r.n:
                            getattr(out[key], attr)[p] = float(r.v)
        return out

    async def series(self, f: LogFilter, *, start: float, end: float, bucket: float) -> list[Stats]:
        """Stats of each `bucket`-second interval from `start` to `end` (the last may be partial)."""
        f = dataclasses.replace(f, start=start, end=end)
        n = max(1, int(-(-(end - start) // bucket)))
        found = await self.stats(f, [_bucket(start, bucket, self.dialect)], limit=n * 8)
        return [found.get((i,), Stats()) for i in range(n)]

    async def breakdown(self, f: LogFilter) -> dict[tuple[str, str], Stats]:
        """Stats per (project, model)."""
        found = await self.stats(f, [messages.c.project, messages.c.model])
        return {(str(k[0]), str(k[1])): v for k, v in found.items()}

    async def per_user(self, f: LogFilter, *, limit: int) -> list[tuple[str, str | None, Stats]]:
        """Stats per (project, end user), the dearest first (requests without a user: user None)."""
        found = await self.stats(f, [messages.c.project, messages.c.user], limit=limit, dearest=True)
        rows = [(str(k[0]), None if k[1] is None else str(k[1]), v) for k, v in found.items()]
        rows.sort(key=lambda r: (-sum(r[2].cost.values()), -r[2].requests, r[0], r[1] or ""))
        return rows[:limit]

    # --- rejected requests (no record: counted per minute in `rejections`) ---------------------------------------

    def _rejected_where(self, start: float, end: float, project: str | None, key_id: str | None) -> list[Any]:
        """Minutes that start in [start, end): a minute's count is placed at its start."""
        r = rejections.c
        where: list[Any] = [r.minute >= start, r.minute < end]
        if project is not None:
            where.append(r.project == project)
        if key_id is not None:
            where.append(r.key_id == key_id)
        return where

    async def rejected(
        self,
        *,
        start: float,
        end: float,
        group: Sequence[str] = REJECTION_GROUPS,
        project: str | None = None,
        key_id: str | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Rejected requests per group (columns of REJECTION_GROUPS), most first, with the last minute seen."""
        r = rejections.c
        cols = [r[g] for g in group]
        total = func.sum(r.requests)
        q = (
            select(*cols, total.label("requests"), func.max(r.minute).label("last_minute"))
            .where(*self._rejected_where(start, end, project, key_id))
            .group_by(*cols)
            .order_by(total.desc(), *cols)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [
                {**{g: row._mapping[g] for g in group}, "requests": int(row.requests), "last_minute": row.last_minute}
                for row in (await conn.execute(q)).all()
            ]

    async def rejected_series(
        self, *, start: float, end: float, bucket: float, project: str | None = None
    ) -> list[int]:
        """Rejected requests in each `bucket`-second interval from `start` to `end` (by the minute they fell in)."""
        n = max(1, int(-(-(end - start) // bucket)))
        index = _bucket(start, bucket, self.dialect, rejections.c.minute)
        q = (
            select(index.label("b"), func.sum(rejections.c.requests).label("n"))
            .where(*self._rejected_where(start, end, project, None))
            .group_by(index)
        )
        out = [0] * n
        async with self.engine.connect() as conn:
            for row in (await conn.execute(q)).all():
                if 0 <= row.b < n:
                    out[row.b] += int(row.n)
        return out

    # --- logs -----------------------------------------------------------------------------------------------------

    async def search(self, f: LogFilter, *, limit: int, after: Cursor | None = None) -> LogPage:
        """Messages matching `f`, newest first, `limit` at a time; `after` continues from a previous page."""
        q = select(*LIST_COLUMNS).where(*_conditions(f, self.dialect))
        if after is not None:
            c = messages.c
            q = q.where(or_(c.created_at < after.created_at, and_(c.created_at == after.created_at, c.id < after.id)))
        q = q.order_by(messages.c.created_at.desc(), messages.c.id.desc()).limit(limit + 1)
        async with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in (await conn.execute(q)).all()]
        more = len(rows) > limit
        rows = rows[:limit]
        return LogPage(rows, Cursor(rows[-1]["created_at"], rows[-1]["id"]) if more and rows else None)

    async def message(self, message_id: str) -> dict[str, Any] | None:
        """One message with everything stored about it, its user feedback and its metric feedback."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(messages).where(messages.c.id == message_id))).first()
            if row is None:
                return None
            fb = await conn.execute(
                select(feedbacks).where(feedbacks.c.message_id == message_id).order_by(feedbacks.c.created_at)
            )
            mf = await conn.execute(
                select(metric_feedback)
                .where(metric_feedback.c.completion_id == message_id)
                .order_by(metric_feedback.c.created_at)
            )
            return {
                **dict(row._mapping),
                "feedbacks": [dict(r._mapping) for r in fb.all()],
                "metric_feedback": [dict(r._mapping) for r in mf.all()],
            }

    # --- sessions -------------------------------------------------------------------------------------------------

    async def sessions(self, f: LogFilter, *, limit: int) -> list[dict[str, Any]]:
        """Sessions with activity matching `f`, most recently active first."""
        c = messages.c
        last = func.max(c.created_at)
        q = (
            select(
                c.session_id,
                c.project,
                func.count().label("turns"),
                func.sum(case((c.status == "error", 1), else_=0)).label("errors"),
                func.min(c.created_at).label("first_at"),
                last.label("last_at"),
                func.max(c.user).label("user"),
            )
            .where(c.session_id.is_not(None), *_conditions(f, self.dialect))
            .group_by(c.session_id, c.project)
            .order_by(last.desc())
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in (await conn.execute(q)).all()]

    async def session(self, session_id: str, *, limit: int = 1000) -> list[dict[str, Any]]:
        """A session's turns in order (every choice of a turn), with the answer and timings of each."""
        c = messages.c
        q = (
            select(
                *LIST_COLUMNS,
                c.answer,
                c.prompt,
                c.choice_index,
                c.finish_reason,
                c.error,
                c.prompt_tokens,
                c.completion_tokens,
            )
            .where(c.session_id == session_id)
            .order_by(c.created_at, c.choice_index)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in (await conn.execute(q)).all()]

    # --- campaigns ------------------------------------------------------------------------------------------------

    async def metric_span(self, project: str, campaign: str, metric: str) -> tuple[float, float] | None:
        """The times of the first and last metric feedback on this campaign's completions."""
        at = metric_feedback.c.created_at
        q = _campaign_feedback(project, campaign, metric, func.min(at).label("lo"), func.max(at).label("hi"))
        async with self.engine.connect() as conn:
            r = (await conn.execute(q)).one()
        return None if r.lo is None else (float(r.lo), float(r.hi))

    async def metric_series(
        self, project: str, campaign: str, metric: str, *, start: float, bucket: float, buckets: int
    ) -> dict[str, list[tuple[int, float]]]:
        """Per model, (count, sum) of the metric's feedback values in each bucket (by feedback time)."""
        offset = (metric_feedback.c.created_at - start) / bucket
        index = cast(func.floor(offset), Integer) if self.dialect == "postgresql" else cast(offset, Integer)
        q = (
            _campaign_feedback(project, campaign, metric, index.label("b"))
            .add_columns(messages.c.model, func.count().label("n"), func.sum(metric_feedback.c.value).label("total"))
            .where(metric_feedback.c.created_at >= start)
            .group_by(index, messages.c.model)
            .limit(buckets * 64)
        )
        out: dict[str, list[tuple[int, float]]] = {}
        async with self.engine.connect() as conn:
            for r in (await conn.execute(q)).all():
                series = out.setdefault(r.model, [(0, 0.0)] * buckets)
                if 0 <= r.b < buckets:
                    series[r.b] = (int(r.n), float(r.total))
        return out


def _campaign_feedback(project: str, campaign: str, metric: str, *cols: ColumnElement[Any]) -> Select[Any]:
    return (
        select(*cols)
        .select_from(metric_feedback.join(messages, messages.c.id == metric_feedback.c.completion_id))
        .where(messages.c.project == project, messages.c.campaign == campaign, metric_feedback.c.metric == metric)
    )


def _percentile_query(
    col: ColumnElement[Any], group: Sequence[ColumnElement[Any]], where: list[ColumnElement[bool]]
) -> Select[Any]:
    """For each group, the rows at the nearest rank of each of PERCENTILES: (group…, v, rn, n)."""
    ranked = (
        select(
            *[g.label(f"g{i}") for i, g in enumerate(group)],
            col.label("v"),
            func.row_number().over(partition_by=list(group) or None, order_by=col).label("rn"),
            func.count().over(partition_by=list(group) or None).label("n"),
        )
        .where(col.is_not(None), *where)
        .subquery()
    )
    picks = [and_(ranked.c.rn * 100 >= p * ranked.c.n, (ranked.c.rn - 1) * 100 < p * ranked.c.n) for p in PERCENTILES]
    return select(*[ranked.c[f"g{i}"] for i in range(len(group))], ranked.c.v, ranked.c.rn, ranked.c.n).where(
        or_(*picks)
    )
