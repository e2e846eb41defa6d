"""CLI: `qcoder [options]`, the coding agent (filled in by the agent work)."""

from qcoder.errors import QcoderError


def add_arguments(parser) -> None:
    parser.add_argument("-p", "--prompt", help="run headless on this task")


def run(args):
    raise QcoderError("the agent is not available yet")
