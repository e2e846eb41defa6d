"""CLI: `qcoder eval` (filled in by the eval work)."""

from qcoder.errors import QcoderError


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="run execution-based benchmarks")
    p.set_defaults(func=_todo)


def _todo(args):
    raise QcoderError(f"`{args.command}` is not available yet")
