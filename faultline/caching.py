"""Caches of what recurs line by line or token by token (the framing, the hints, the field names),
each bounded, and all of them cleared and measured from here (`clear_all`, `cache_stats`).

A plain dict, bounded by emptying it when full: its lookups are most of what a cached line costs,
and an LRU's bookkeeping on every hit cost more than the rare misses after a clear. Only short keys
are kept (each cache names its limit), so hostile input cannot fill memory through a cache: the
line caches hold at most 16,384 lines of at most 500 characters, with what was made of them, some
65 MB each at worst (a line holding an emoji takes 4 bytes a character), in each process.
"""

import weakref
from collections.abc import Callable, Sized
from dataclasses import dataclass
from typing import TypeVar

Key = TypeVar("Key", bound=Sized)
Value = TypeVar("Value")


@dataclass(frozen=True)
class CacheStats:
    """What a cache holds and what it cost since it was made or last cleared."""

    entries: int
    misses: int  # lookups that called the function; hits go uncounted, as counting costs every hit
    not_kept: int  # misses whose key was longer than the cache keeps
    full_clears: int  # times it emptied itself for being full
    max_entries: int
    max_key_length: int


class BoundedCache(dict[Key, Value]):
    """`cache[key]` is `function(key)`, kept while `key` is at most `max_key_length` long.

    A dict whose `__missing__` computes. Hot loops bind `get = cache.get` and write `get(key) or
    cache[key]`: a hit is then a plain dict's `get` (232 ns a line of the flattened demo's messages,
    split included, as before there was a cache object), where `cache[key]` alone took 250 ns (the
    interpreter specializes subscripts of plain dicts only) and a method call 349 ns. A false value
    falls through to `cache[key]`, which finds it kept.
    """

    # Slots, and no count of misses kept on the way: each attribute read through the instance's
    # __dict__ cost a miss some 400 instructions more (callgrind).
    __slots__ = (
        "function",
        "max_entries",
        "max_key_length",
        "name",
        "not_kept",
        "full_clears",
        "_dropped",
        "__weakref__",
    )

    def __init__(
        self,
        function: Callable[[Key], Value],
        *,
        max_entries: int,
        max_key_length: int,
        name: str | None = None,
    ) -> None:
        """`name` defaults to the function's `module.qualname` (a builtin has none: name it)."""
        super().__init__()
        self.function, self.max_entries, self.max_key_length = function, max_entries, max_key_length
        self.name = name or f"{function.__module__}.{function.__qualname__}"
        self.not_kept = self.full_clears = self._dropped = 0
        # By name, so a module imported anew replaces its caches rather than adding to them.
        _caches[self.name] = self

    def __missing__(self, key: Key) -> Value:
        # Every miss is kept or counted as not kept: the misses are the entries, those not kept and
        # those dropped when full.
        value = self.function(key)
        if len(key) > self.max_key_length:
            self.not_kept += 1
        else:
            if len(self) >= self.max_entries:
                self._dropped += len(self)
                self.full_clears += 1
                super().clear()
            self[key] = value
        return value

    def clear(self) -> None:
        """Empty the cache and start its counts again."""
        super().clear()
        self.not_kept = self.full_clears = self._dropped = 0

    def stats(self) -> CacheStats:
        entries = len(self)
        return CacheStats(
            entries,
            entries + self.not_kept + self._dropped,
            self.not_kept,
            self.full_clears,
            self.max_entries,
            self.max_key_length,
        )

    def __repr__(self) -> str:  # not the dict's, which would print every entry
        return f"<BoundedCache {self.name}: {len(self)} of {self.max_entries} entries>"


# Weakly, so a cache made and dropped (in a test) leaves the registry with it.
_caches: weakref.WeakValueDictionary[str, BoundedCache] = weakref.WeakValueDictionary()


def clear_all() -> None:
    """Empty every cache of this process (a worker's caches are its own)."""
    for cache in list(_caches.values()):
        cache.clear()


def cache_stats() -> dict[str, CacheStats]:
    """Each cache of this process by name (`module.function`), with what it holds and its misses."""
    return {name: cache.stats() for name, cache in sorted(_caches.items())}
