"""faultline's science: plain functions on pandas and numpy that know nothing of Dagster."""
