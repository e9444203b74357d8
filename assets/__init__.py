"""Software-defined assets and their checks, one module per pipeline."""

import faultline  # noqa: F401  (its pandas text storage, before any frame is made)
