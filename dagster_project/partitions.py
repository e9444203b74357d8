"""Partitions: one per UTC day of `created_at`, from FAULTLINE_START_DATE (default 2025-01-01)."""

import os

import dagster as dg

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=os.environ.get("FAULTLINE_START_DATE", "2025-01-01"), timezone="UTC"
)
