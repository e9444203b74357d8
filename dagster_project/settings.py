"""Deployment settings read from the environment when the code location loads.

How the steps that read a source retry when it is down, and how often the sensor ticks. Both are
definition-time in Dagster (a RetryPolicy, a sensor's minimum interval), so they cannot be run Config.
"""

import os

import dagster as dg

SOURCE_RETRIES_ENV = "FAULTLINE_SOURCE_RETRIES"
SOURCE_RETRY_DELAY_ENV = "FAULTLINE_SOURCE_RETRY_DELAY_S"
SENSOR_INTERVAL_ENV = "FAULTLINE_SENSOR_INTERVAL_S"

# With exponential backoff Dagster waits delay x (2^n - 1) before retry n: 30 s, 90 s, 210 s, each
# +- 30 s of jitter. A database restart or fail-over (a minute or two) is ridden out in about five
# minutes; a source down for longer fails the run, which the daily schedule's next day will not hide.
DEFAULT_SOURCE_RETRIES = 3
DEFAULT_SOURCE_RETRY_DELAY_S = 30.0


def number_from_env(name: str, default: float, minimum: float, kind: type[int] | type[float]) -> int | float:
    """The variable as a number of `kind`, at least `minimum`; else an error naming the variable."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return kind(default)
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not {'an integer' if kind is int else 'a number'}") from None
    if value < minimum:
        raise ValueError(f"{name}={raw!r} must be at least {minimum}")
    return value


def source_retry_policy() -> dg.RetryPolicy:
    """Retries for a step that reads a source: FAULTLINE_SOURCE_RETRIES times, exponential backoff from
    FAULTLINE_SOURCE_RETRY_DELAY_S, jitter so that steps failed by one outage do not return together.
    """
    return dg.RetryPolicy(
        max_retries=number_from_env(SOURCE_RETRIES_ENV, DEFAULT_SOURCE_RETRIES, 0, int),
        delay=number_from_env(SOURCE_RETRY_DELAY_ENV, DEFAULT_SOURCE_RETRY_DELAY_S, 0, float),
        backoff=dg.Backoff.EXPONENTIAL,
        jitter=dg.Jitter.PLUS_MINUS,
    )


def sensor_interval_s(default: int) -> int:
    """The sensor's minimum interval: FAULTLINE_SENSOR_INTERVAL_S, else `default`."""
    return number_from_env(SENSOR_INTERVAL_ENV, default, 1, int)
