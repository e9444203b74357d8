"""Bounded caches: each value computed once while kept, every cache cleared and measured from one place."""

from faultline import cleaning, flatten, redaction, templates
from faultline.caching import BoundedCache, CacheStats, cache_stats, clear_all


def counting(function):
    """`function`, and the keys it was called with."""
    calls = []

    def counted(key):
        calls.append(key)
        return function(key)

    return counted, calls


def test_a_key_is_computed_once_and_then_read_from_the_cache():
    upper, calls = counting(str.upper)
    cache = BoundedCache(upper, max_entries=10, max_key_length=10)
    assert [cache["ab"], cache["ab"], cache["cd"], cache["ab"]] == ["AB", "AB", "CD", "AB"]
    assert calls == ["ab", "cd"]
    assert cache.stats() == CacheStats(
        entries=2, misses=2, not_kept=0, full_clears=0, max_entries=10, max_key_length=10
    )


def test_false_values_are_kept_like_any_other():
    nothing, calls = counting(lambda key: "" if key == "a" else ())
    cache = BoundedCache(nothing, max_entries=10, max_key_length=10)
    assert [cache["a"], cache["a"], cache["b"], cache["b"]] == ["", "", (), ()]
    get = cache.get  # the hot loops' way: a false value falls through to the subscript, still kept
    assert [get(key) or cache[key] for key in ["a", "b", "a"]] == ["", (), ""]
    assert calls == ["a", "b"]


def test_a_key_longer_than_the_bound_is_computed_every_time_and_never_kept():
    upper, calls = counting(str.upper)
    cache = BoundedCache(upper, max_entries=10, max_key_length=3)
    assert [cache["abcd"], cache["abcd"]] == ["ABCD", "ABCD"]
    assert calls == ["abcd", "abcd"]
    assert len(cache) == 0
    assert (cache.stats().misses, cache.stats().not_kept) == (2, 2)


def test_a_full_cache_empties_itself_and_counts_it():
    cache = BoundedCache(str.upper, max_entries=2, max_key_length=10, name="upper")
    for key in ["a", "b", "c", "d", "e"]:
        cache[key]
    assert dict(cache) == {"e": "E"}
    assert (cache.stats().misses, cache.stats().full_clears) == (5, 2)


def test_clear_empties_the_cache_and_starts_its_counts_again():
    cache = BoundedCache(str.upper, max_entries=1, max_key_length=1, name="upper")
    cache["a"], cache["b"], cache["long"]
    cache.clear()
    assert cache.stats() == CacheStats(
        entries=0, misses=0, not_kept=0, full_clears=0, max_entries=1, max_key_length=1
    )


def test_every_module_level_cache_is_measured_and_cleared_from_one_place():
    caches = {
        module.__name__: [value for value in vars(module).values() if isinstance(value, BoundedCache)]
        for module in (cleaning, flatten, redaction, templates)
    }
    assert all(caches.values()), caches
    redaction.redact_secrets("mail ops@acme.io\nagain")
    cleaning.user_text_and_hint("❌ Error message: build failed\nℹ️ Hint: retry")
    stats = cache_stats()
    assert {cache.name for found in caches.values() for cache in found} <= set(stats)
    for module in ("faultline.redaction", "faultline.cleaning"):
        assert sum(stats[cache.name].entries for cache in caches[module]) >= 1

    clear_all()
    assert all(figures.entries == figures.misses == 0 for figures in cache_stats().values())
    assert redaction.redact_secrets("mail ops@acme.io") == "mail <email>"


def test_a_cache_no_longer_used_leaves_the_registry():
    cache = BoundedCache(str.upper, max_entries=1, max_key_length=1, name="a passing cache")
    assert "a passing cache" in cache_stats()
    del cache
    assert "a passing cache" not in cache_stats()


def test_a_cache_prints_its_size_not_its_entries():
    cache = BoundedCache(str.upper, max_entries=4, max_key_length=9, name="upper")
    cache["secret"]
    assert repr(cache) == "<BoundedCache upper: 1 of 4 entries>"
