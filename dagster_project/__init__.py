"""The Dagster side of faultline: definitions, jobs, schedules, sensors and the demo command."""
