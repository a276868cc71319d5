"""Quotas: how much a user may predict (per minute, per day) and batch (rows, jobs), by tier.

Buckets are per user, never per key or session: all of a user's API keys and JWT sessions
share them. The tier and overrides are read from the user object the caller already holds
(possibly a cached copy), so checking a quota costs one limiter call and no database query.
"""

from __future__ import annotations

import functools
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from inferx.api_keys import repository as keys_repo
from inferx.config import Settings
from inferx.context import AppContext
from inferx.errors import InvalidInput, TooManyRequests
from inferx.quotas.schemas import JobCaps, KeyUsage, UsageRead, WindowUsage
from inferx.quotas.windows import Outcome, Tally, Window, WindowState
from inferx.tables import User

MINUTE_S = 60
DAY_S = 86_400
TALLY_TTL_S = 2 * DAY_S  # a day's per-key counts outlive the day, for late readers
SESSION_FIELD = "session"  # tally field of predictions made with an access token
JOB_SLOT_RETRY_S = 30


class QuotaExceeded(TooManyRequests):
    title = "Quota exceeded"


class JobLimitReached(TooManyRequests):
    title = "Too many batch jobs"


class BatchTooLarge(InvalidInput):
    title = "Batch larger than the quota"


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    """The limits that apply to one user: the tier's, with the user's overrides on top.
    ``None`` means no cap."""

    per_day: int | None
    per_minute: int
    batch_rows_per_day: int | None
    max_running_jobs: int
    max_queued_jobs: int


def tier_limits(settings: Settings, tier: str) -> QuotaLimits:
    if tier not in ("free", "pro", "enterprise"):
        tier = "free"  # an unknown tier gets the least, never the most

    def get(name: str) -> int:
        value: int = getattr(settings, f"quota_{tier}_{name}")
        return value

    return QuotaLimits(
        per_day=get("per_day") or None,
        per_minute=get("per_minute"),
        batch_rows_per_day=get("batch_rows_per_day") or None,
        max_running_jobs=get("max_running_jobs"),
        max_queued_jobs=get("max_queued_jobs"),
    )


def limits_for(settings: Settings, user: User) -> QuotaLimits:
    base = tier_limits(settings, user.tier)
    return QuotaLimits(
        per_day=user.quota_per_day if user.quota_per_day is not None else base.per_day,
        per_minute=(
            user.quota_per_minute if user.quota_per_minute is not None else base.per_minute
        ),
        batch_rows_per_day=(
            user.quota_batch_rows_per_day
            if user.quota_batch_rows_per_day is not None
            else base.batch_rows_per_day
        ),
        max_running_jobs=base.max_running_jobs,
        max_queued_jobs=base.max_queued_jobs,
    )


@dataclass(slots=True)  # one per prediction: not frozen, which costs 4x to construct
class QuotaDecision:
    """What a quota check found: every window it looked at, after counting this request."""

    outcome: Outcome
    now: float

    @property
    def allowed(self) -> bool:
        return self.outcome.allowed

    @property
    def windows(self) -> tuple[WindowState, ...]:
        return self.outcome.states

    @property
    def refused(self) -> WindowState | None:
        return self.outcome.refused

    @property
    def binding(self) -> WindowState | None:
        """The most constraining window: the refusing one, else the fewest remaining (the
        longer wait on a tie)."""
        if self.refused is not None:
            return self.refused
        capped = [w for w in self.windows if w.capped]
        if not capped:
            return None
        return min(capped, key=lambda w: (w.remaining, -w.reset_at(self.now)))

    def reset_in(self, window: WindowState) -> int:
        """Seconds until ``window`` admits a request again (refused) or its oldest hit leaves."""
        if window.retry_at is not None:
            at = window.retry_at if math.isfinite(window.retry_at) else self.now + window.seconds
            return max(1, math.ceil(at - self.now))
        return max(0, math.ceil(window.reset_at(self.now) - self.now))

    @property
    def retry_after(self) -> int | None:
        return None if self.refused is None else self.reset_in(self.refused)

    @property
    def headers(self) -> dict[str, str]:
        """``RateLimit-*`` (IETF draft; Reset in seconds) and their ``X-RateLimit-*`` twins."""
        window = self.binding
        if window is None:
            return {}
        limit, remaining, reset = str(window.limit), str(window.remaining), self.reset_in(window)
        return {
            "RateLimit-Limit": limit,
            "RateLimit-Remaining": remaining,
            "RateLimit-Reset": str(reset),
            "X-RateLimit-Limit": limit,
            "X-RateLimit-Remaining": remaining,
            "X-RateLimit-Reset": str(reset),
            "RateLimit-Policy": _policy(tuple((w.limit, w.seconds) for w in self.windows)),
        }


@functools.lru_cache(maxsize=1024)
def _policy(windows: tuple[tuple[int, int], ...]) -> str:
    """``RateLimit-Policy`` of (limit, seconds) windows; the uncapped (limit 0) are left out."""
    return ", ".join(f"{limit};w={seconds}" for limit, seconds in windows if limit > 0)


def window_keys(user_id: uuid.UUID) -> dict[str, str]:
    return {
        "burst": f"quota:{user_id}:minute",
        "daily": f"quota:{user_id}:day",
        "batch_rows": f"quota:{user_id}:rows",
    }


def tally_key(user_id: uuid.UUID, now: float) -> str:
    return f"quota:{user_id}:tally:{day_of(now)}"


_last_day: tuple[int, str] = (-1, "")


def day_of(now: float) -> str:
    global _last_day
    day = int(now // DAY_S)
    if _last_day[0] != day:
        _last_day = (day, datetime.fromtimestamp(now, UTC).date().isoformat())
    return _last_day[1]


def prediction_windows(user_id: uuid.UUID, limits: QuotaLimits) -> tuple[Window, ...]:
    keys = window_keys(user_id)
    windows = [Window("burst", keys["burst"], limits.per_minute, MINUTE_S)]
    if limits.per_day is not None:
        windows.append(Window("daily", keys["daily"], limits.per_day, DAY_S))
    return tuple(windows)


_PLANS: dict[tuple[object, ...], tuple[Settings, tuple[Window, ...]]] = {}
_MAX_PLANS = 4096


def _windows_of(settings: Settings, user: User) -> tuple[Window, ...]:
    """``prediction_windows`` memoised per user and limits: it runs on every prediction."""
    key = (id(settings), user.id, user.tier, user.quota_per_day, user.quota_per_minute)
    found = _PLANS.get(key)
    if found is not None and found[0] is settings:  # the entry keeps its settings alive
        return found[1]
    if len(_PLANS) >= _MAX_PLANS:
        _PLANS.clear()
    windows = prediction_windows(user.id, limits_for(settings, user))
    _PLANS[key] = (settings, windows)
    return windows


def rows_window(user_id: uuid.UUID, limits: QuotaLimits) -> Window:
    return Window(
        "batch_rows", window_keys(user_id)["batch_rows"], limits.batch_rows_per_day or 0, DAY_S
    )


async def consume_prediction(
    ctx: AppContext, user: User, *, api_key_id: uuid.UUID | None, cost: int = 1
) -> QuotaDecision:
    """Count one prediction request against the user's per-minute and daily windows (both or
    neither). Raises ``QuotaExceeded`` naming the window that is full."""
    limiter = ctx.limiter
    outcome = await limiter.acquire(
        _windows_of(ctx.settings, user),
        cost=cost,
        tally=Tally(
            tally_key(user.id, limiter.clock()),
            str(api_key_id) if api_key_id else SESSION_FIELD,
            TALLY_TTL_S,
        ),
        fallback_divisor=ctx.settings.quota_fallback_replicas,
    )
    decision = QuotaDecision(outcome, limiter.clock())
    if not decision.allowed:
        _refuse(ctx, decision, "prediction")
    return decision


async def consume_batch_rows(ctx: AppContext, user: User, rows: int) -> QuotaDecision:
    """Count a batch job's rows against the user's daily row quota (a moving 24 hours).
    Raises ``QuotaExceeded`` when the rows do not fit today, ``BatchTooLarge`` when they could
    never fit."""
    if rows < 0:
        raise ValueError("rows must be >= 0")
    limits = limits_for(ctx.settings, user)
    window = rows_window(user.id, limits)
    outcome = await ctx.limiter.acquire_weighted(
        window, cost=rows, fallback_divisor=ctx.settings.quota_fallback_replicas
    )
    decision = QuotaDecision(outcome, ctx.limiter.clock())
    refused = decision.refused
    if refused is not None and refused.retry_at is not None and math.isinf(refused.retry_at):
        raise BatchTooLarge(
            f"A job of {rows} rows is larger than your daily row quota ({window.limit}); "
            "split it into smaller jobs.",
            limit="batch_rows",
            limit_max=window.limit,
        )
    if not decision.allowed:
        _refuse(ctx, decision, "batch")
    return decision


async def check_job_slots(ctx: AppContext, user: User, running: int, queued: int) -> None:
    """Before queueing one more job: refuse when the user's queue is full. ``running`` and
    ``queued`` are the user's current counts of running and queued jobs."""
    limits = limits_for(ctx.settings, user)
    if queued >= limits.max_queued_jobs:
        ctx.metrics.rate_limited.labels("jobs").inc()
        raise JobLimitReached(
            f"You have {queued} queued and {running} running jobs; your tier allows "
            f"{limits.max_queued_jobs} queued and {limits.max_running_jobs} running. "
            "Wait for some to finish.",
            retry_after=JOB_SLOT_RETRY_S,
            limit="queued_jobs",
            limit_max=limits.max_queued_jobs,
            max_running_jobs=limits.max_running_jobs,
        )


def may_start_job(ctx: AppContext, user: User, running: int) -> bool:
    """For the scheduler: may one more of this user's queued jobs start now?"""
    return running < limits_for(ctx.settings, user).max_running_jobs


async def usage(ctx: AppContext, session: AsyncSession, user: User) -> UsageRead:
    """The user's counts and limits; reads the windows without counting anything."""
    limits = limits_for(ctx.settings, user)
    limiter = ctx.limiter
    divisor = ctx.settings.quota_fallback_replicas
    predictions = QuotaDecision(
        await limiter.acquire(
            prediction_windows(user.id, limits), cost=0, fallback_divisor=divisor
        ),
        limiter.clock(),
    )
    rows = QuotaDecision(
        await limiter.acquire_weighted(
            rows_window(user.id, limits), cost=0, fallback_divisor=divisor
        ),
        limiter.clock(),
    )
    now = limiter.clock()
    counts = await limiter.tally(tally_key(user.id, now))
    keys = await keys_repo.list_owned(session, user.id)
    known = {str(k.id) for k in keys}
    by_key = [
        KeyUsage(id=k.id, name=k.name, prefix=k.prefix, predictions_today=counts.get(str(k.id), 0))
        for k in keys
    ]
    by_key += [
        KeyUsage(id=uuid.UUID(field), name=None, prefix=None, predictions_today=n)
        for field, n in counts.items()
        if field != SESSION_FIELD and field not in known
    ]
    states = {w.name: w for w in predictions.windows}
    return UsageRead(
        tier=user.tier,
        day=datetime.fromtimestamp(now, UTC).date(),
        predictions_today=sum(counts.values()),
        daily=_window_usage(predictions, states.get("daily"), DAY_S, user.quota_per_day),
        per_minute=_window_usage(predictions, states["burst"], MINUTE_S, user.quota_per_minute),
        api_keys=by_key,
        sessions_predictions_today=counts.get(SESSION_FIELD, 0),
        batch_rows=_window_usage(rows, rows.windows[0], DAY_S, user.quota_batch_rows_per_day),
        jobs=JobCaps(max_running=limits.max_running_jobs, max_queued=limits.max_queued_jobs),
        degraded=limiter.degraded,
    )


def _window_usage(
    decision: QuotaDecision, window: WindowState | None, seconds: int, override: int | None
) -> WindowUsage:
    source: Literal["tier", "override"] = "tier" if override is None else "override"
    if window is None:  # not tracked: no cap
        return WindowUsage(
            limit=None, used=None, remaining=None, window_s=seconds, resets_at=None, source=source
        )
    if not window.capped:
        return WindowUsage(
            limit=None,
            used=window.used,
            remaining=None,
            window_s=seconds,
            resets_at=None,
            source=source,
        )
    return WindowUsage(
        limit=window.limit,
        used=window.used,
        remaining=window.remaining,
        window_s=seconds,
        resets_at=datetime.fromtimestamp(window.reset_at(decision.now), UTC),
        source=source,
    )


def _refuse(ctx: AppContext, decision: QuotaDecision, what: str) -> None:
    window = decision.refused
    assert window is not None
    ctx.metrics.rate_limited.labels(window.name).inc()
    retry_after = decision.reset_in(window)
    label = {"burst": "per-minute", "daily": "daily", "batch_rows": "daily row"}[window.name]
    exc = QuotaExceeded(
        f"{what.capitalize()} quota exceeded: {label} limit of {window.limit} reached; "
        f"retry in {retry_after} s.",
        retry_after=retry_after,
        limit=window.name,
        limit_max=window.limit,
        window_s=window.seconds,
        resets_at=_iso(decision.now + retry_after),
    )
    exc.headers.update(decision.headers)
    raise exc


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
