"""Issue 14 item 4: plugin and MCP tools need approval (and never run in plan mode) unless declared read-only."""

import sys
import textwrap

import pytest

from qcoder.agent.mcp import McpServers
from qcoder.agent.permissions import Permissions
from qcoder.agent.plugins import plugin_tools
from qcoder.agent.tools.base import tool

from .test_agent_extensions import MCP_SERVER

MODES = ("plan", "default", "auto-edit", "yolo")


def runs_in(tool_) -> list[bool]:
    """In which modes the tool runs without anybody approving it (headless)."""
    return [Permissions(mode).check(tool_, {}) is None for mode in MODES]


def test_undeclared_tools_need_approval():
    @tool
    def deploy(target: str) -> str:
        """Push to production."""
        return target

    @tool(kind="read")
    def weather(city: str) -> str:
        """Read the forecast."""
        return city

    assert deploy.kind == "execute" and runs_in(deploy) == [False, False, False, True]
    assert runs_in(weather) == [True, True, True, True]


def test_entry_point_plugins_default_to_execute(tmp_path, monkeypatch):
    site = tmp_path / "site"
    info = site / "qcoder_kinds_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: qcoder-kinds-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[qcoder.tools]\nwipe = qcoder_kinds_plugin:wipe\n"
                                           "peek = qcoder_kinds_plugin:peek\nplain = qcoder_kinds_plugin:plain\n")
    (site / "qcoder_kinds_plugin.py").write_text(textwrap.dedent('''
        from qcoder.agent.tools.base import tool

        @tool
        def wipe() -> str:
            """Delete things."""
            return "wiped"

        @tool(kind="read")
        def peek() -> str:
            """Look at things."""
            return "seen"

        def plain(n: int) -> str:
            """A plain typed function."""
            return str(n)
    '''))
    monkeypatch.syspath_prepend(str(site))
    tools = {t.name: t for t in plugin_tools()}
    assert runs_in(tools["wipe"]) == [False, False, False, True]
    assert runs_in(tools["plain"]) == [False, False, False, True]
    assert runs_in(tools["peek"]) == [True, True, True, True]


def test_mcp_tools_by_declaration(tmp_path):
    (tmp_path / "server.py").write_text(MCP_SERVER)
    spec = {"command": sys.executable, "args": ["server.py"]}
    servers = McpServers({"plain": spec, "trusted": {**spec, "trust": True}, "ro": {**spec, "read_only": True}},
                         tmp_path)
    try:
        tools = {t.name: t for t in servers.tools}
        assert runs_in(tools["plain__multiply"]) == [False, False, False, True]
        assert runs_in(tools["trusted__multiply"]) == [False, True, True, True]  # trust skips the question, not plan
        assert runs_in(tools["ro__multiply"]) == [True, True, True, True]
        assert "'plan'" in Permissions("plan").check(tools["trusted__multiply"], {"a": 1, "b": 2})
    finally:
        servers.close()


@pytest.mark.parametrize("mode", MODES)
def test_builtin_read_tools_stay_read_only(mode, tmp_path):
    from qcoder.agent.tools.files import file_tools
    from qcoder.agent.tools.search import search_tools
    from qcoder.agent.tools.workspace import Workspace

    ws = Workspace(tmp_path)
    kinds = {t.name: t.kind for t in [*file_tools(ws), *search_tools(ws)]}
    assert kinds == {"read_file": "read", "write_file": "edit", "edit": "edit", "list_directory": "read",
                     "glob": "read", "grep_search": "read"}
    assert all(Permissions(mode).check(t, {}) is None for t in search_tools(ws))
