"""Software-defined assets and their checks, one module per pipeline."""
