"""In-process LRU of loaded models, bounded by total bytes and by count.

Loading is single-flight: when several threads ask for the same missing key together, one of
them loads it and the others wait for that result (or that error). A failed load is not
cached, so the next request tries again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar


class Sized(Protocol):
    @property
    def nbytes_estimate(self) -> int: ...


M = TypeVar("M", bound=Sized)


@dataclass(slots=True)
class CacheStats:
    items: int
    bytes: int
    max_items: int
    max_bytes: int
    hits: int
    misses: int
    loads: int
    load_errors: int
    evictions: int
    keys: list[str] = field(default_factory=list)


class _Loading:
    __slots__ = ("done", "value", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: object = None
        self.error: BaseException | None = None


class ModelCache(Generic[M]):
    """LRU of models keyed by version; ``get_or_load`` is the way in."""

    def __init__(self, max_bytes: int, max_items: int) -> None:
        if max_bytes <= 0 or max_items <= 0:
            raise ValueError("max_bytes and max_items must be positive")
        self.max_bytes = max_bytes
        self.max_items = max_items
        self._items: OrderedDict[str, tuple[M, int]] = OrderedDict()
        self._loading: dict[str, _Loading] = {}
        self._lock = threading.Lock()
        self._bytes = 0
        self._hits = self._misses = self._loads = self._load_errors = self._evictions = 0

    def get(self, key: str) -> M | None:
        with self._lock:
            entry = self._items.get(key)
            if entry is None:
                return None
            self._items.move_to_end(key)
            self._hits += 1
            return entry[0]

    def get_or_load(self, key: str, load: Callable[[], M], *, size_hint: int = 0) -> M:
        """The cached model, or ``load()``'s result cached; concurrent callers share one load.

        ``size_hint`` (e.g. the file size) lets room be made before loading, so memory stays
        near the bound while the new model is being built.
        """
        with self._lock:
            entry = self._items.get(key)
            if entry is not None:
                self._items.move_to_end(key)
                self._hits += 1
                return entry[0]
            self._misses += 1
            pending = self._loading.get(key)
            owner = pending is None
            if pending is None:
                pending = self._loading[key] = _Loading()
                self._make_room(size_hint, keep=None)
        if owner:
            return self._load(key, load, pending)
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.value  # type: ignore[return-value]

    def _load(self, key: str, load: Callable[[], M], pending: _Loading) -> M:
        try:
            model = load()
            size = max(0, int(model.nbytes_estimate))
        except BaseException as exc:
            with self._lock:
                self._load_errors += 1
                del self._loading[key]
            pending.error = exc
            pending.done.set()
            raise
        with self._lock:
            self._loads += 1
            self._items[key] = (model, size)
            self._bytes += size
            self._make_room(0, keep=key)
            del self._loading[key]
        pending.value = model
        pending.done.set()
        return model

    def _make_room(self, incoming: int, keep: str | None) -> None:
        # Called with the lock held. The newest entry is never evicted, even when it alone
        # exceeds max_bytes: serving one big model beats refusing it.
        slots = 1 if keep is None else 0
        while self._items and (
            self._bytes + incoming > self.max_bytes or len(self._items) + slots > self.max_items
        ):
            oldest = next(iter(self._items))
            if oldest == keep:
                break
            self._drop(oldest)

    def _drop(self, key: str) -> None:
        _, size = self._items.pop(key)
        self._bytes -= size
        self._evictions += 1

    def evict(self, key: str) -> bool:
        with self._lock:
            if key not in self._items:
                return False
            self._drop(key)
            return True

    def clear(self) -> None:
        with self._lock:
            for key in list(self._items):
                self._drop(key)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def stats(self, *, with_keys: bool = False) -> CacheStats:
        with self._lock:
            return CacheStats(
                items=len(self._items),
                bytes=self._bytes,
                max_items=self.max_items,
                max_bytes=self.max_bytes,
                hits=self._hits,
                misses=self._misses,
                loads=self._loads,
                load_errors=self._load_errors,
                evictions=self._evictions,
                keys=list(self._items) if with_keys else [],
            )
