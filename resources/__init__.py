"""Resources: where faultline's data comes from and where its results go."""

import faultline  # noqa: F401  (its pandas text storage, before any frame is made)
