"""Caches of what recurs line by line or token by token: the framing, the hints, the field names.

A plain dict, bounded by emptying it when full: its lookups are most of what a cached line costs,
and an LRU's bookkeeping on every hit cost more than the rare misses after a clear. Only short keys
are kept (each cache names its limit), so hostile input cannot fill memory through a cache: the
line caches hold at most 16,384 lines of at most 500 characters, with what was made of them, some
65 MB each at worst (a line holding an emoji takes 4 bytes a character), in each process.
"""

from collections.abc import Callable
from typing import TypeVar

Value = TypeVar("Value")


def cached(
    values: dict[str, Value], function: Callable[[str], Value], max_entries: int, max_key_chars: int
) -> Callable[[str], Value]:
    """`function` of one string, computing and keeping its result in `values`.

    Callers look in `values` first (`values.get(key) or compute(key)`), which spares a call on a hit.
    """

    def compute(key: str) -> Value:
        value = function(key)
        if len(key) <= max_key_chars:
            if len(values) >= max_entries:
                values.clear()
            values[key] = value
        return value

    return compute
