"""MCP servers and entry-point plugins become tools beside the built-ins."""

import socket
import subprocess
import sys
import textwrap
import time

import pytest

from qcoder.agent.mcp import McpServers
from qcoder.agent.plugins import plugin_tools
from qcoder.agent.tools.base import ToolError
from qcoder.errors import QcoderError

MCP_SERVER = textwrap.dedent('''
    try:
        from mcp.server.mcpserver import MCPServer as Server  # mcp 2.x
    except ImportError:
        from mcp.server.fastmcp import FastMCP as Server  # mcp 1.x

    app = Server("calc")

    @app.tool()
    def multiply(a: int, b: int) -> int:
        """Multiply two integers."""
        return a * b

    @app.tool()
    def explode() -> str:
        """Always fails."""
        raise ValueError("boom")

    app.run()
''')


def test_stdio_mcp_server_tools(tmp_path):
    (tmp_path / "server.py").write_text(MCP_SERVER)
    servers = McpServers({"calc": {"command": sys.executable, "args": ["server.py"]}}, tmp_path)
    try:
        tools = {t.name: t for t in servers.tools}
        assert set(tools) == {"calc__multiply", "calc__explode"}
        multiply = tools["calc__multiply"]
        assert multiply.kind == "execute" and multiply.description == "Multiply two integers."
        assert set(multiply.parameters["properties"]) == {"a", "b"}
        assert multiply.func(a=6, b=7) == "42"
        with pytest.raises(ToolError, match="explode"):  # the server's error reply, not a crash
            tools["calc__explode"].func()
    finally:
        servers.close()


def test_mcp_server_that_cannot_start_is_a_clear_error(tmp_path):
    with pytest.raises(QcoderError, match="MCP server 'broken' failed to start"):
        McpServers({"broken": {"command": sys.executable, "args": ["-c", "raise SystemExit(1)"]}}, tmp_path,
                   timeout=20)


def test_entry_point_plugin(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "qcoder_demo_plugin-1.0.dist-info").mkdir(parents=True)
    (site / "qcoder_demo_plugin-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: qcoder-demo-plugin\nVersion: 1.0\n")
    (site / "qcoder_demo_plugin-1.0.dist-info" / "entry_points.txt").write_text(
        "[qcoder.tools]\nshout = qcoder_demo_plugin:shout\nbroken = qcoder_demo_plugin:missing\n")
    (site / "qcoder_demo_plugin.py").write_text(textwrap.dedent('''
        from qcoder.agent.tools.base import tool

        @tool
        def shout(text: str) -> str:
            """Upper-case a text."""
            return text.upper()
    '''))
    monkeypatch.syspath_prepend(str(site))
    tools = {t.name: t for t in plugin_tools()}
    assert tools["shout"].parameters["required"] == ["text"]
    assert tools["shout"].func(text="hi") == "HI"
    assert "broken" not in tools


HTTP_SERVER = textwrap.dedent('''
    import sys
    from mcp.server.mcpserver import MCPServer

    app = MCPServer("web")

    @app.tool()
    def greet(name: str) -> str:
        """Greet someone."""
        return f"hello {name}"

    app.run("streamable-http", port=int(sys.argv[1]))
''')


def test_streamable_http_mcp_server(tmp_path):
    pytest.importorskip("mcp.server.mcpserver")  # the server side of this test is written for mcp 2.x
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "web.py").write_text(HTTP_SERVER)
    server = subprocess.Popen([sys.executable, "web.py", str(port)], cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):  # wait until it listens
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        servers = McpServers({"web": {"url": f"http://127.0.0.1:{port}/mcp", "trust": True}}, tmp_path)
        try:
            (greet,) = servers.tools
            assert greet.name == "web__greet" and greet.kind == "trusted"
            assert greet.func(name="qcoder") == "hello qcoder"
        finally:
            servers.close()
    finally:
        server.kill()
        server.wait()
