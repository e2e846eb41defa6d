"""The one exception type for expected failures.

Anything a user can cause (a bad path, an unknown model name, a corrupt file, no network) raises
QcoderError with one precise message. The CLI prints it as a single line and exits 2; the server
turns it into an OpenAI-format error body. Everything else is a bug and keeps its traceback.
"""


class QcoderError(Exception):
    """An expected error: the message is shown to the user as is, on one line."""

    exit_code = 2
