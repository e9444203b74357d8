#!/bin/sh
# Runs once, when the PostgreSQL volume is new: faultline's stores get a database of their own,
# apart from Dagster's.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -c "CREATE DATABASE \"${FAULTLINE_POSTGRES_DB}\" OWNER \"${POSTGRES_USER}\""
