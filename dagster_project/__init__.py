"""The Dagster side of faultline: definitions, jobs, schedules, sensors and the demo command."""

import faultline  # noqa: F401  (its pandas text storage, before any frame is made)
