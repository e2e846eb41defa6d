"""What the /health endpoint reports."""

from settings import MAX_RETRY, TIMEOUT_S


def health() -> dict:
    return {"status": "ok", "max_retry": MAX_RETRY, "timeout_s": TIMEOUT_S}
