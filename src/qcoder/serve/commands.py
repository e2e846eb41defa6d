"""CLI: `qcoder serve` (filled in by the serve work)."""

from qcoder.errors import QcoderError


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="run an OpenAI-compatible server")
    p.set_defaults(func=_todo)


def _todo(args):
    raise QcoderError(f"`{args.command}` is not available yet")
