"""CLI: `qcoder generate`, `qcoder chat`, `qcoder bench` (filled in by the engine work)."""

from qcoder.errors import QcoderError


def register(subparsers) -> None:
    p = subparsers.add_parser("generate", help="generate text from a prompt")
    p.set_defaults(func=_todo)
    p = subparsers.add_parser("chat", help="chat with a model in the terminal")
    p.set_defaults(func=_todo)
    p = subparsers.add_parser("bench", help="measure engine speed (optionally against llama.cpp)")
    p.set_defaults(func=_todo)


def _todo(args):
    raise QcoderError(f"`{args.command}` is not available yet")
