"""CLI: `qcoder pull`, `qcoder models` (filled in by the model-pull work)."""

from qcoder.errors import QcoderError


def register(subparsers) -> None:
    p = subparsers.add_parser("pull", help="download and verify a model into the cache")
    p.set_defaults(func=_todo)
    p = subparsers.add_parser("models", help="list known and cached models")
    p.set_defaults(func=_todo)


def _todo(args):
    raise QcoderError(f"`{args.command}` is not available yet")
