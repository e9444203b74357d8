"""faultline's science: plain functions on pandas and numpy that know nothing of Dagster."""

import pandas as pd

# Text columns keep Python strings, as they did before pyarrow came in (for Parquet files): pandas 3
# stores text in Arrow when pyarrow is installed, and Arrow refuses a lone surrogate (`\ud83d` from a
# JSON escape without its pair), which error messages from the wild hold and the flatten step must
# quarantine or redact, not crash on. Set here, where every process of faultline imports it first.
pd.options.mode.string_storage = "python"
