"""CLI: `qcoder [options]`, the coding agent. Interactive TUI by default; headless with -p (or piped stdin)."""

from __future__ import annotations

import sys

from qcoder.engine.commands import add_speculative_option
from qcoder.errors import QcoderError
from qcoder.model.registry import AGENT_MODEL


def add_arguments(parser) -> None:
    parser.add_argument("-p", "--prompt", help="run headless on this task (also read from stdin when piped)")
    parser.add_argument("--output-format", choices=("text", "json", "stream-json"), default="text",
                        help="headless output: text, one JSON object, or one JSON event per line")
    model = parser.add_argument_group("model")
    model.add_argument("-m", "--model", help="registry name or local path (built-in engine; default "
                                             f"{AGENT_MODEL}), or the model name at --base-url; env OPENAI_MODEL")
    model.add_argument("--base-url", help="an OpenAI-compatible endpoint; env OPENAI_BASE_URL")
    model.add_argument("--api-key", help="key for --base-url; env OPENAI_API_KEY")
    add_speculative_option(model)
    limits = parser.add_argument_group("limits")
    limits.add_argument("--max-turns", type=int, default=40, help="model calls per task (default 40)")
    limits.add_argument("--max-tokens", type=int, help="prompt + completion tokens per task")
    limits.add_argument("--timeout", type=float, help="seconds per task")
    safety = parser.add_argument_group("safety")
    safety.add_argument("--approval-mode", choices=("plan", "default", "auto-edit", "yolo"),
                        help="plan = read-only; default = ask before writes and commands; auto-edit = ask before "
                             "commands; yolo = ask nothing")
    safety.add_argument("-y", "--yolo", dest="yes", action="store_true", help="same as --approval-mode yolo")
    safety.add_argument("--sandbox", action="store_true", help="run shell commands in bubblewrap (no network)")
    safety.add_argument("--trust", action="store_true",
                        help="trust this folder for this run: apply its .qcoder/settings.toml, project tools and MCP "
                             "servers (env QCODER_TRUST_WORKSPACE=1; the TUI asks once and remembers)")
    session = parser.add_argument_group("session")
    session.add_argument("-c", "--continue", dest="continue_", action="store_true", help="resume the last session")
    session.add_argument("--resume", metavar="ID", help="resume the session with this id")
    parser.add_argument("--workspace", metavar="DIR", help="the project directory (default: the current one)")


def run(args) -> int:
    if args.resume and args.continue_:
        raise QcoderError("use either --continue or --resume ID, not both")
    task = args.prompt
    if task is None and not sys.stdin.isatty():
        task = sys.stdin.read().strip()
        if not task:
            raise QcoderError("no task: stdin was empty (give one with -p TASK)")
    if task is not None:
        from qcoder.agent.headless import run_headless

        return run_headless(args, task)
    from qcoder.agent.tui import run_tui

    return run_tui(args)
