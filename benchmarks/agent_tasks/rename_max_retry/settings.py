"""Application settings, overridable from the environment."""

import os

MAX_RETRY = int(os.environ.get("APP_MAX_RETRY", "3"))
TIMEOUT_S = float(os.environ.get("APP_TIMEOUT_S", "10"))
