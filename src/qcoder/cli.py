"""The one entry point: `qcoder [agent options] | serve | generate | chat | pull | models | eval | bench`.

Each area owns its subcommands in a light `commands.py` (argument set-up plus a handler that imports
the heavy modules only when run), so `qcoder --help` stays instant. With no subcommand, `qcoder` is the
coding agent. Expected errors (QcoderError) print one line and exit 2; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from qcoder import __version__
from qcoder.errors import QcoderError

# subcommand -> module with `register(subparsers)`; order is the order shown in --help.
SUBCOMMAND_MODULES = {
    "serve": "qcoder.serve.commands",
    "generate": "qcoder.engine.commands",
    "chat": "qcoder.engine.commands",
    "bench": "qcoder.bench",
    "pull": "qcoder.model.commands",
    "models": "qcoder.model.commands",
    "eval": "qcoder.eval.commands",
    "review": "qcoder.ci.commands",
    "gen-tests": "qcoder.ci.commands",
    "ci": "qcoder.ci.commands",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qcoder",
        description="qcoder: an agentic coding assistant around Qwen3-Coder. Without a subcommand it runs the "
        "agent in the current directory (interactive, or headless with -p).",
        epilog="Run `qcoder COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"qcoder {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in dict.fromkeys(SUBCOMMAND_MODULES.values()):
        module = importlib.import_module(module_name)
        module.register(subparsers)
    return parser


def build_agent_parser() -> argparse.ArgumentParser:
    from qcoder.agent import commands

    parser = argparse.ArgumentParser(
        prog="qcoder",
        description="qcoder agent: reads, edits, runs tests and verifies its own work in the current directory. "
        "Other commands: " + ", ".join(SUBCOMMAND_MODULES) + " (see `qcoder COMMAND --help`).",
    )
    parser.add_argument("--version", action="version", version=f"qcoder {__version__}")
    commands.add_arguments(parser)
    parser.set_defaults(func=commands.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from qcoder.threads import configure_openmp

    configure_openmp()  # before torch loads (see qcoder.threads); the environment's own setting wins
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMAND_MODULES:
        parser = build_parser()
    elif argv and argv[0] == "agent":
        argv = argv[1:]
        parser = build_agent_parser()
    elif argv in (["-h"], ["--help"]):
        parser = build_parser()
        parser.print_help()
        print("\nAgent options (`qcoder [options]`):")
        build_agent_parser().print_help()
        return 0
    else:
        parser = build_agent_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except QcoderError as exc:
        print(f"qcoder: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("qcoder: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
