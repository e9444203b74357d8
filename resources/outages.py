"""What a source does when it is down: the errors that tell an outage from a wrong setting, and how
often a step that reads the source retries through an outage (Config of the source's resource)."""

import random

import dagster as dg
from pydantic import Field


class SourceUnavailableError(RuntimeError):
    """A data source could not be reached, or dropped the connection: an outage, worth retrying.

    The message names the source and the cause, never a password."""


class SourceConfigurationError(RuntimeError):
    """A data source answered, but not as configured (no such table, column or database, a refused
    password or permission): a retry would only repeat it. The message names the source, the cause
    and the setting to look at, never a password."""


class RetriedOnOutage(dg.ConfigurableResource):
    """A source whose outages the steps reading it ride out: this many retries, exponential backoff.

    Only SourceUnavailableError is retried; any other failure fails the step at once.
    """

    # With exponential backoff retry n waits delay x (2^n - 1): 30 s, 90 s, 210 s, each +- 30 s of
    # jitter. A database restart or fail-over (a minute or two) is ridden out in about five minutes;
    # a source down for longer fails the run, which the daily schedule's next day will not hide.
    outage_retries: int = Field(
        default=3, ge=0, description="Retries of a read when the source is down (FAULTLINE_SOURCE_RETRIES)."
    )
    outage_retry_delay_s: float = Field(
        default=30.0,
        ge=0,
        allow_inf_nan=False,
        description="Base delay of those retries in seconds, doubled and more each time "
        "(FAULTLINE_SOURCE_RETRY_DELAY_S).",
    )

    def outage_retry_wait_s(self, retry_number: int, draw: random.Random | None = None) -> float:
        """How long to wait before retry `retry_number + 1`, jittered so that the steps one outage
        failed do not all come back at the same moment."""
        delay = self.outage_retry_delay_s
        jitter = (draw or random).uniform(-delay, delay)
        return max(0.0, delay * (2 ** (retry_number + 1) - 1) + jitter)
