"""Moving windows that are checked together and counted together, in process or on Redis.

A prediction is refused when either the per-minute or the daily window is full, and a refused
request must count in neither; ``limits`` checks one item per call, so doing this atomically
and in one Redis round trip needs the small Lua scripts below. The Redis layout is the one of
``limits``' moving window (a list of hit timestamps, newest first, trimmed to the limit), with
expired entries popped from the tail so each check costs O(1) amortised. A hit leaves its
window exactly ``seconds`` after it was made: when ``Retry-After`` says so, not a second later.

Weighted windows (a batch job of N rows counts N) keep one entry per job and a running sum.
Tallies are plain per-day counters (predictions per API key) that never refuse anything.

On Redis, a user who keeps a replica busy gets a lease: the check that finds plenty of room
also reserves a few more hits (at most an eighth of what is left, see ``ACQUIRE``), and the
replica serves the next requests from them without a round trip for up to ``LEASE_S``. Leased
hits count in Redis from the moment they are granted, so replicas together never admit more
than the limit; what a lease did not use is given back when it ends. Requests served from a
lease are tallied per key in process and written to Redis within ``FLUSH_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from inferx.kit.coalesce import Coalescer

PUSH_CHUNK = 5000  # Lua's unpack() has a stack limit; push large costs in slices
LEASE_S = 0.5  # how long a replica may serve from a lease
LEASE_MIN = 8  # smaller leases are not worth it: exact checks instead
LEASE_MAX = 256
FLUSH_S = 1.0  # lease tallies and refunds are written this often
FORGET_LEASES_S = 60.0  # a user idle this long has no lease state left


@dataclass(frozen=True, slots=True)
class Window:
    """``limit`` hits per ``seconds``; ``key`` names the bucket. ``limit`` 0 means no cap (only
    for weighted windows, which still count)."""

    name: str
    key: str
    limit: int
    seconds: int

    @property
    def capped(self) -> bool:
        return self.limit > 0


# WindowState, Outcome and Tally are made for every quota check: plain slotted dataclasses,
# whose constructor costs a quarter of a frozen one's; nothing changes them once built.
@dataclass(slots=True)
class WindowState:
    name: str
    limit: int
    seconds: int
    used: int
    oldest: float | None  # timestamp of the oldest hit still in the window
    retry_at: float | None  # when the refused cost would fit; inf if it never can

    @property
    def capped(self) -> bool:
        return self.limit > 0

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    def reset_at(self, now: float) -> float:
        """When the oldest hit leaves the window (a full window from now when it is empty)."""
        return (self.oldest if self.oldest is not None else now) + self.seconds


@dataclass(slots=True)
class Outcome:
    allowed: bool
    states: tuple[WindowState, ...]
    refused: WindowState | None


@dataclass(slots=True)
class Tally:
    """Add ``cost`` to ``field`` of the counter ``key`` when the hit is allowed."""

    key: str
    field: str
    ttl_s: int


class WindowStore(Protocol):
    async def acquire(
        self, windows: tuple[Window, ...], cost: int, now: float, tally: Tally | None
    ) -> Outcome: ...

    async def acquire_weighted(self, window: Window, cost: int, now: float) -> Outcome: ...

    async def tally(self, key: str) -> dict[str, int]: ...

    async def clear(self, *keys: str) -> None: ...


def _states(
    windows: tuple[Window, ...],
    found: list[tuple[int, float | None, float | None]],
    added: int,
    now: float,
) -> Outcome:
    """Window states after the call: ``added`` is what was counted (0 when refused)."""
    states = tuple(
        WindowState(
            w.name,
            w.limit,
            w.seconds,
            used + added,
            oldest if oldest is not None or not added else now,
            retry_at,
        )
        for w, (used, oldest, retry_at) in zip(windows, found, strict=True)
    )
    refused = next((s for s in states if s.retry_at is not None), None)
    return Outcome(refused is None, states, refused)


class MemoryWindows:
    """One process's windows. Each call runs without awaiting, so it is atomic on the loop."""

    SWEEP_EVERY_S = 60.0

    def __init__(self) -> None:
        self._hits: dict[str, deque[float]] = {}
        self._weighted: dict[str, tuple[deque[tuple[float, int]], list[int]]] = {}
        self._tallies: dict[str, tuple[dict[str, int], float]] = {}
        self._expires: dict[str, float] = {}
        self._swept = 0.0

    async def acquire(
        self, windows: tuple[Window, ...], cost: int, now: float, tally: Tally | None = None
    ) -> Outcome:
        self._sweep(now)
        found: list[tuple[int, float | None, float | None]] = []
        for w in windows:
            hits = self._hits.get(w.key)
            if hits is None:
                found.append((0, None, math.inf if cost > w.limit else None))
                continue
            floor = now - w.seconds
            while hits and hits[0] <= floor:
                hits.popleft()
            used = len(hits)
            retry_at: float | None = None
            if used + cost > w.limit:
                # The (used + cost - limit)-th oldest hit must leave before ``cost`` more fit.
                retry_at = (
                    hits[used + cost - w.limit - 1] + w.seconds if cost <= w.limit else math.inf
                )
            found.append((used, hits[0] if hits else None, retry_at))
        allowed = all(retry_at is None for _, _, retry_at in found)
        if allowed and cost > 0:
            for w in windows:
                hits = self._hits.setdefault(w.key, deque())
                hits.extend([now] * cost)
                while len(hits) > w.limit:
                    hits.popleft()
                self._expires[w.key] = now + w.seconds
            if tally is not None:
                counts, _ = self._tallies.get(tally.key, ({}, 0.0))
                counts[tally.field] = counts.get(tally.field, 0) + cost
                self._tallies[tally.key] = (counts, now + tally.ttl_s)
        return _states(windows, found, cost if allowed else 0, now)

    async def acquire_weighted(self, window: Window, cost: int, now: float) -> Outcome:
        self._sweep(now)
        entries, total = self._weighted.get(window.key, (deque(), [0]))
        floor = now - window.seconds
        while entries and entries[0][0] <= floor:
            total[0] -= entries.popleft()[1]
        retry_at: float | None = None
        if window.capped and total[0] + cost > window.limit:
            retry_at = math.inf
            if cost <= window.limit:
                freed = 0
                for ts, amount in entries:
                    freed += amount
                    if total[0] - freed + cost <= window.limit:
                        retry_at = ts + window.seconds
                        break
        found = [(total[0], entries[0][0] if entries else None, retry_at)]
        if retry_at is None and cost > 0:
            entries.append((now, cost))
            total[0] += cost
            self._weighted[window.key] = (entries, total)
            self._expires[window.key] = now + window.seconds
            return _states((window,), found, cost, now)
        return _states((window,), found, 0, now)

    async def tally(self, key: str) -> dict[str, int]:
        counts, _ = self._tallies.get(key, ({}, 0.0))
        return dict(counts)

    async def clear(self, *keys: str) -> None:
        for key in keys:
            self._hits.pop(key, None)
            self._weighted.pop(key, None)
            self._tallies.pop(key, None)
            self._expires.pop(key, None)

    def _sweep(self, now: float) -> None:
        """Forget buckets nobody used for a whole window, so idle users cost no memory."""
        if now - self._swept < self.SWEEP_EVERY_S:
            return
        self._swept = now
        for key in [k for k, until in self._expires.items() if until < now]:
            self._hits.pop(key, None)
            self._weighted.pop(key, None)
            del self._expires[key]
        for key in [k for k, (_, until) in self._tallies.items() if until < now]:
            del self._tallies[key]


# KEYS: n window lists, then optionally a tally hash.
# ARGV: now, cost, n, lease wanted, lease minimum, lease stamp, refund stamp, refund count,
# (limit, seconds) * n, then tally field and ttl.
# Returns {refused window index or 0, lease granted, then used, oldest, retry entry for each
# window}. A lease is granted only when the request is allowed, and takes at most an eighth of
# what is left in every window; below the minimum it is none. Leased hits are stamped with the
# lease's end (the latest moment they can be used), so they never leave a window early.
ACQUIRE = """
local now = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local lease = tonumber(ARGV[4])
local refund = tonumber(ARGV[8])
if refund > 0 then
  for i = 1, n do redis.call('lrem', KEYS[i], refund, ARGV[7]) end
end
local out = {0, 0}
for i = 1, n do
  local key = KEYS[i]
  local limit = tonumber(ARGV[7 + 2 * i])
  local floor = now - tonumber(ARGV[8 + 2 * i])
  local last = redis.call('lindex', key, -1)
  while last and tonumber(last) <= floor do
    redis.call('rpop', key)
    last = redis.call('lindex', key, -1)
  end
  local used = redis.call('llen', key)
  local blocker = false
  if used + cost > limit then
    if out[1] == 0 then out[1] = i end
    if cost <= limit then blocker = redis.call('lindex', key, limit - cost) end
  end
  lease = math.min(lease, math.floor((limit - used - cost) / 8))
  out[#out + 1] = used
  out[#out + 1] = last or false
  out[#out + 1] = blocker or false
end
if lease < tonumber(ARGV[5]) or cost == 0 then lease = 0 end
if out[1] == 0 and cost > 0 then
  out[2] = lease
  local entries = {}
  for j = 1, math.min(cost, PUSH_CHUNK) do entries[j] = ARGV[1] end
  local stamps = {}
  for j = 1, math.min(lease, PUSH_CHUNK) do stamps[j] = ARGV[6] end
  for i = 1, n do
    local key = KEYS[i]
    local limit = tonumber(ARGV[7 + 2 * i])
    local left = cost
    while left > 0 do
      local chunk = math.min(left, PUSH_CHUNK)
      redis.call('lpush', key, unpack(entries, 1, chunk))
      left = left - chunk
    end
    if lease > 0 then redis.call('lpush', key, unpack(stamps, 1, math.min(lease, PUSH_CHUNK))) end
    redis.call('ltrim', key, 0, limit - 1)
    redis.call('expire', key, math.ceil(tonumber(ARGV[8 + 2 * i])) + 1)
  end
  if #KEYS > n then
    redis.call('hincrby', KEYS[n + 1], ARGV[9 + 2 * n], cost)
    redis.call('expire', KEYS[n + 1], tonumber(ARGV[10 + 2 * n]))
  end
end
return out
""".replace("PUSH_CHUNK", str(PUSH_CHUNK))

# KEYS: the list of "timestamp:amount" entries (newest first), its running sum.
# ARGV: now, cost, limit (0 = no cap), seconds.
# Returns {allowed 0/1, used, oldest, the timestamp of the entry that must leave before the
# cost fits ("inf" when it never can), or false when allowed}.
ACQUIRE_WEIGHTED = """
local now = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local seconds = tonumber(ARGV[4])
local floor = now - seconds
local function parse(entry)
  local sep = string.find(entry, ':', 1, true)
  return tonumber(string.sub(entry, 1, sep - 1)), tonumber(string.sub(entry, sep + 1))
end
local total = tonumber(redis.call('get', KEYS[2]) or '0')
local last = redis.call('lindex', KEYS[1], -1)
local oldest = false
while last do
  local ts, amount = parse(last)
  if ts > floor then oldest = string.sub(last, 1, string.find(last, ':', 1, true) - 1) break end
  total = total - amount
  redis.call('rpop', KEYS[1])
  last = redis.call('lindex', KEYS[1], -1)
end
if not last then total = 0 end
if limit > 0 and total + cost > limit then
  local retry = 'inf'
  if cost <= limit then
    local entries = redis.call('lrange', KEYS[1], 0, -1)
    local freed = 0
    for idx = #entries, 1, -1 do
      local ts, amount = parse(entries[idx])
      freed = freed + amount
      if total - freed + cost <= limit then
        retry = string.sub(entries[idx], 1, string.find(entries[idx], ':', 1, true) - 1)
        break
      end
    end
  end
  return {0, total, oldest, retry}
end
if cost > 0 then
  redis.call('lpush', KEYS[1], ARGV[1] .. ':' .. ARGV[2])
  total = total + cost
  redis.call('expire', KEYS[1], math.ceil(seconds))
  redis.call('set', KEYS[2], total, 'EX', math.ceil(seconds))
  if not oldest then oldest = ARGV[1] end
end
return {1, total, oldest, false}
"""


def _float(value: Any) -> float | None:
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else str(value)
    return math.inf if text == "inf" else float(text)


@dataclass(slots=True)
class _Lease:
    """Hits reserved in Redis for this replica; ``base`` is each window's count at the grant,
    the granting request included, and ``taken`` what the lease has served since."""

    windows: tuple[Window, ...]
    size: int
    until: float
    stamp: str
    base: list[tuple[int, float | None]]
    taken: int = 0

    @property
    def left(self) -> int:
        return self.size - self.taken

    def outcome(self, now: float) -> Outcome:
        found: list[tuple[int, float | None, float | None]] = [
            (used + self.taken, oldest, None) for used, oldest in self.base
        ]
        return _states(self.windows, found, 0, now)


@dataclass(slots=True)
class _LeaseState:
    """Per user (per tuple of windows): the lease, if any, and how big the next one is."""

    lease: _Lease | None = None
    granting: bool = False  # a request is asking Redis for a lease: others ask for none
    size: int = 0  # the next lease to ask for; 0: decide from how often requests come
    last_call: float = field(default=-math.inf)

    def end(self, windows: tuple[Window, ...]) -> tuple[str, int]:
        """Drop the lease; the next one is as big as what it served (none if the windows it
        was for are no longer the user's). Returns what to give back: (stamp, hits)."""
        lease = self.lease
        assert lease is not None
        self.lease = None
        self.size = lease.taken if lease.windows == windows else 0
        return lease.stamp, lease.left


class RedisWindows:
    """The same windows shared by every replica. Quota checks made in the same loop tick go
    to Redis as one pipeline of script calls (one round trip), each still atomic; a busy user
    is served from leases (module docstring)."""

    def __init__(self, client: Redis, prefix: str, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._prefix = prefix
        self._clock = clock
        self._acquire_weighted = client.register_script(ACQUIRE_WEIGHTED)
        self._acquire_sha = client.register_script(ACQUIRE).sha  # sent as EVALSHA
        self._loaded = False
        self._acquire_many: Coalescer[tuple[list[str], list[Any]], Any] = Coalescer(
            self._run_acquires
        )
        self._leases: dict[tuple[str, ...], _LeaseState] = {}
        self._tallies: dict[tuple[str, str], list[int]] = {}  # (key, field) -> [count, ttl]
        self._refunds: list[tuple[list[str], str, int]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def _run_acquires(self, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        for _ in range(2):
            pipe = self._client.pipeline(transaction=False)
            load = not self._loaded  # first use, or Redis lost its scripts: load in the same trip
            if load:
                pipe.script_load(ACQUIRE)
            for keys, args in calls:
                pipe.evalsha(self._acquire_sha, len(keys), *keys, *args)
            results: list[Any] = await pipe.execute(raise_on_error=False)
            if load:
                results = results[1:]
            self._loaded = not any(isinstance(r, NoScriptError) for r in results)
            if self._loaded:
                break
        return results

    async def acquire(
        self, windows: tuple[Window, ...], cost: int, now: float, tally: Tally | None = None
    ) -> Outcome:
        keys = [self._prefix + w.key for w in windows]
        state = self._leases.get(tuple(keys)) if cost > 0 else None
        refund: tuple[str, int] = ("", 0)
        wanted = 0
        if state is not None:
            lease = state.lease
            if lease is not None:
                if lease.windows == windows and now < lease.until and lease.left >= cost:
                    lease.taken += cost
                    state.last_call = now
                    if lease.left == 0:
                        state.size, state.lease = min(LEASE_MAX, 2 * lease.size), None
                    if tally is not None:
                        self._tally_later(tally, cost)
                    return lease.outcome(now)
                refund = state.end(windows)  # ended, too small, or the limits changed
            if not state.granting:
                if now - state.last_call > LEASE_S:  # back after a pause: start small again
                    state.size = 0
                wanted = state.size or (LEASE_MIN if now - state.last_call < LEASE_S / 8 else 0)
                state.granting = wanted > 0
            state.last_call = now
        elif cost > 0:
            self._leases[tuple(keys)] = _LeaseState(last_call=now)
            self._flush_soon()  # which also forgets idle users
        stamp = repr(now + LEASE_S)
        args: list[Any] = [repr(now), cost, len(windows), wanted, LEASE_MIN, stamp, *refund]
        for w in windows:
            args += [w.limit, w.seconds]
        if tally is not None:
            keys.append(self._prefix + tally.key)
            args += [tally.field, tally.ttl_s]
        try:
            raw = await self._acquire_many((keys, args))
        finally:
            if wanted and state is not None:
                state.granting = False
        found: list[tuple[int, float | None, float | None]] = []
        for i, w in enumerate(windows):
            used, oldest, blocker = raw[2 + 3 * i : 5 + 3 * i]
            retry_at: float | None = None
            if int(used) + cost > w.limit:
                retry_at = math.inf if blocker is None else float(blocker) + w.seconds
            found.append((int(used), _float(oldest), retry_at))
        allowed = int(raw[0]) == 0
        outcome = _states(windows, found, cost if allowed else 0, now)
        if wanted and state is not None:
            granted = int(raw[1])
            state.size = granted
            if granted:
                state.lease = _Lease(
                    windows,
                    granted,
                    now + LEASE_S,
                    stamp,
                    [(s.used, s.oldest) for s in outcome.states],
                )
                self._flush_soon()
        return outcome

    def _tally_later(self, tally: Tally, cost: int) -> None:
        entry = self._tallies.setdefault((self._prefix + tally.key, tally.field), [0, 0])
        entry[0] += cost
        entry[1] = tally.ttl_s
        self._flush_soon()

    def _flush_soon(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        while self._leases or self._tallies or self._refunds:
            await asyncio.sleep(FLUSH_S)
            await self.flush()

    async def flush(self) -> None:
        """Write lease tallies, and give back what ended leases did not use."""
        now = self._clock()
        for lease_keys, state in list(self._leases.items()):
            lease = state.lease
            if lease is not None and now >= lease.until and not state.granting:
                stamp, left = state.end(lease.windows)
                if left:
                    self._refunds.append((list(lease_keys), stamp, left))
            if state.lease is None and now - state.last_call > FORGET_LEASES_S:
                del self._leases[lease_keys]
        tallies, self._tallies = self._tallies, {}
        refunds, self._refunds = self._refunds, []
        if not tallies and not refunds:
            return
        pipe = self._client.pipeline(transaction=False)
        for keys, stamp, count in refunds:
            for key in keys:
                pipe.lrem(key, count, stamp)
        for (key, name), (count, ttl) in tallies.items():
            pipe.hincrby(key, name, count)
            pipe.expire(key, ttl)
        try:
            await pipe.execute()
        except Exception:  # Redis away: the counts wait for the next flush; refunds are lost
            for (key, name), (count, ttl) in tallies.items():
                entry = self._tallies.setdefault((key, name), [0, ttl])
                entry[0] += count

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(BaseException):
                await self._flusher
        for state in self._leases.values():  # ``flush`` gives back every lease still held
            if state.lease is not None:
                state.lease.until = -math.inf
        with contextlib.suppress(Exception):
            await self.flush()

    async def acquire_weighted(self, window: Window, cost: int, now: float) -> Outcome:
        keys = [self._prefix + window.key, self._prefix + window.key + ":sum"]
        raw = await self._acquire_weighted(
            keys=keys, args=[repr(now), cost, window.limit, window.seconds]
        )
        allowed, used, oldest, retry = raw
        # The script reports the sum after the call; _states adds what was counted.
        added = cost if allowed else 0
        retry_at = None if allowed else _float(retry)
        if retry_at is not None:
            retry_at += window.seconds  # the script names the entry that must leave first
        found = [(int(used) - added, _float(oldest), retry_at)]
        return _states((window,), found, added, now)

    async def tally(self, key: str) -> dict[str, int]:
        raw = await self._client.hgetall(self._prefix + key)
        counts = {(k.decode() if isinstance(k, bytes) else str(k)): int(v) for k, v in raw.items()}
        for (pending_key, name), (count, _) in self._tallies.items():
            if pending_key == self._prefix + key:
                counts[name] = counts.get(name, 0) + count
        return counts

    async def clear(self, *keys: str) -> None:
        full = [self._prefix + k for k in keys] + [self._prefix + k + ":sum" for k in keys]
        for lease_keys in [k for k in self._leases if set(k) & set(full)]:
            del self._leases[lease_keys]
        await self._client.delete(*full)
