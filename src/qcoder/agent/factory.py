"""Assemble an Agent from command-line options and settings (shared by headless and the TUI)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from qcoder.agent import trust
from qcoder.agent.checkpoints import Checkpoints
from qcoder.agent.context import Compressor, system_prompt, workspace_context
from qcoder.agent.loop import Agent, Limits
from qcoder.agent.permissions import Permissions
from qcoder.agent.plugins import plugin_tools
from qcoder.agent.repair import Repair, RepairSettings
from qcoder.agent.session import Session
from qcoder.agent.settings import ProjectTool, load_settings, user_dir, user_settings, workspace_settings
from qcoder.agent.testing import Tester, detect_test_command
from qcoder.agent.tools.files import file_tools
from qcoder.agent.tools.project import project_tools
from qcoder.agent.tools.search import search_tools
from qcoder.agent.tools.shell import Shell
from qcoder.agent.tools.workspace import Workspace
from qcoder.client import EngineClient, make_client
from qcoder.errors import QcoderError
from qcoder.model.registry import AGENT_MODEL, cache_dir

# Low temperature keeps small models on the rails; settings `[sampling]` may change any of these. The
# built-in engine also gets a mild repetition penalty and a tighter reply cap, because a degenerate 0.5B
# reply (digits forever) otherwise costs minutes on a CPU; unknown endpoints get only standard fields.
DEFAULT_SAMPLING = {"temperature": 0.2, "top_p": 0.9, "max_tokens": 2048}
ENGINE_SAMPLING = {**DEFAULT_SAMPLING, "top_k": 20, "repetition_penalty": 1.05, "max_tokens": 1024}


def _warn(text: str) -> None:
    print(f"qcoder: warning: {text}", file=sys.stderr)


def _readable(read, workspace: Path) -> dict:
    """An untrusted folder's settings are only described, never applied: a broken file is no error yet."""
    try:
        return read(workspace)
    except QcoderError:
        return {}


class Built:
    """The agent plus what must be closed when it is done (MCP connections, the in-process engine)."""

    def __init__(self, agent: Agent, closers: list):
        self.agent, self._closers = agent, closers

    def close(self) -> None:
        for close in self._closers:
            close()
        # The engine's loop thread must stop before the interpreter does: left to the client's __del__ at exit,
        # torch's threads were torn down under it and the process aborted after its result ("terminate called
        # without an active exception", seen when a run ended at its time limit).
        close_client = getattr(self.agent.client, "close", None)  # the current one: the TUI's /model swaps it
        if close_client:
            close_client()


def build(args, *, emit=None, ask=None, ask_trust=None, warn=None) -> Built:
    """`ask`: approve a tool call; `ask_trust`: trust this folder? (TUI only; headless runs never ask);
    `warn`: say one line to the user (default: stderr)."""
    workspace = Path(args.workspace or os.getcwd()).resolve()
    if not workspace.is_dir():
        raise QcoderError(f"workspace {workspace} is not a directory")
    trusted = trust.decide(workspace, user_dir(), _readable(workspace_settings, workspace), user_settings(),
                           flag=getattr(args, "trust", False), ask=ask_trust, warn=warn or _warn)
    settings = load_settings(workspace, trusted=trusted)
    mode = "yolo" if args.yes else (args.approval_mode or settings.approval_mode or "default")
    try:
        permissions = Permissions(mode, settings.permissions.allow, settings.permissions.deny, ask=ask,
                                  workspace=workspace)
    except ValueError as exc:
        raise QcoderError(str(exc)) from exc

    shell = Shell(workspace, timeout=settings.command_timeout, env_allow=settings.shell.allow_env,
                  use_sandbox=args.sandbox)
    ws = Workspace(workspace)
    test_tool = settings.tools.get("test") or ProjectTool()
    test_command = test_tool.command
    # none configured: the project's own runner (`command = ""` turns this off); only in a trusted folder or in
    # yolo mode (where the shell runs anything anyway), since the detected tool runs the project's code unasked
    if test_command is None and (trusted or mode == "yolo"):
        test_command = detect_test_command(workspace, shell)
        if test_command:
            test_tool = ProjectTool(command=test_command, description="Run the tests (detected runner)")
            settings = settings.model_copy(update={"tools": {**settings.tools, "test": test_tool}})
    tools = [*file_tools(ws), *search_tools(ws), shell.tool(), *project_tools(settings, shell), *plugin_tools()]
    closers = []
    if settings.mcp_servers:
        from qcoder.agent.mcp import McpServers

        servers = McpServers(settings.mcp_servers, workspace)
        closers.append(servers.close)
        tools += servers.tools

    # The built-in engine's default is the agent's own (larger than the completion default); an endpoint's is
    # OPENAI_MODEL or the endpoint's. Every run's system turn (instructions, tool schemas) is the same: the engine
    # keeps its K/V on disk, and the next run loads it instead of computing it (engine/prompt_cache.py).
    remote = args.base_url or os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_MODEL")
    client = make_client(args.model or settings.model or (None if remote else AGENT_MODEL), args.base_url,
                         args.api_key, engine_opts={"speculative": args.speculative,
                                                    "prompt_cache": cache_dir() / "prompt-cache"})
    tester = Tester(workspace, test_command, shell, test_tool.timeout) if test_command else None
    if args.resume:
        session = Session.load(workspace, args.resume)
    elif args.continue_:
        session = Session.latest(workspace)
    else:
        session = Session.new(workspace, model=client.model)
        session.add({"role": "system", "content": system_prompt(bool(test_command))})

    limits = Limits(max_turns=args.max_turns, max_tokens=args.max_tokens, timeout=args.timeout,
                    max_test_rounds=settings.max_test_rounds)
    agent = Agent(
        client=client, tools={t.name: t for t in tools}, permissions=permissions, session=session, workspace=ws,
        shell=shell, checkpoints=Checkpoints(workspace),
        compressor=Compressor(client, limit=settings.context_limit),
        test_command=test_command, limits=limits,
        sampling={**(ENGINE_SAMPLING if isinstance(client, EngineClient) else DEFAULT_SAMPLING),
                  **settings.sampling},
        emit=emit or (lambda event, **data: None),
        repair=Repair(tester, RepairSettings.from_settings(settings.repair)),
        context=workspace_context(workspace),
    )
    return Built(agent, closers)
