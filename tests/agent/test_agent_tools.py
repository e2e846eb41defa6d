"""The built-in tools on real files and processes: confinement, edit robustness, guards, shell timeouts."""

import os
import signal
import time

import pytest

from qcoder.agent.settings import Settings
from qcoder.agent.tools.base import ToolError, tool
from qcoder.agent.tools.files import edit, list_directory, read_file, write_file
from qcoder.agent.tools.project import project_tools
from qcoder.agent.tools.search import glob, grep_search
from qcoder.agent.tools.shell import Shell, cap, scrubbed_env
from qcoder.agent.tools.workspace import Workspace


@pytest.fixture
def ws(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    (root / "app.py").write_text("def add(a, b):\n    return a - b\n\n\ndef sub(a, b):\n    return a - b\n")
    return Workspace(root)


def test_path_escapes_are_rejected(ws, tmp_path):
    (tmp_path / "secret.txt").write_text("s3cret")
    (ws.root / "link").symlink_to(tmp_path / "secret.txt")
    for bad in ("../secret.txt", str(tmp_path / "secret.txt"), "link", "sub/../../secret.txt"):
        with pytest.raises(ToolError, match="outside the workspace"):
            read_file(ws, bad)
    with pytest.raises(ToolError, match="outside the workspace"):
        write_file(ws, "../evil.txt", "x")
    assert not (tmp_path / "evil.txt").exists()
    assert "s3cret" not in read_file(ws, "app.py")


def test_read_file_numbers_lines_and_pages(ws):
    (ws.root / "long.txt").write_text("".join(f"line {i}\n" for i in range(1, 11)))
    out = read_file(ws, "long.txt", offset=3, limit=2)
    assert out.splitlines()[:2] == ["3| line 3", "4| line 4"]
    assert "offset=5" in out


def test_read_file_refuses_binary_and_directories(ws):
    (ws.root / "blob.bin").write_bytes(b"\x00\x01\x02" * 10)
    with pytest.raises(ToolError, match="binary"):
        read_file(ws, "blob.bin")
    with pytest.raises(ToolError, match="directory"):
        read_file(ws, ".")


def test_edit_unique_match(ws):
    out = edit(ws, "app.py", "def add(a, b):\n    return a - b", "def add(a, b):\n    return a + b")
    assert "+    return a + b" in out
    assert (ws.root / "app.py").read_text().startswith("def add(a, b):\n    return a + b\n")
    assert ws.changed == {"app.py"}


def test_edit_accepts_text_copied_with_line_numbers(ws):
    edit(ws, "app.py", "5| def sub(a, b):\n6|     return a - b", "5| def sub(a, b):\n6|     return b - a")
    assert (ws.root / "app.py").read_text().endswith("def sub(a, b):\n    return b - a\n")


def test_edit_that_breaks_python_is_refused(ws):
    before = (ws.root / "app.py").read_text()
    with pytest.raises(ToolError, match=r"invalid Python \(line 2: unexpected indent\); the file is unchanged"):
        edit(ws, "app.py", "def add(a, b):", "def add(a, b): return a + b")
    with pytest.raises(ToolError, match="invalid Python"):
        write_file(ws, "app.py", "def broken(:\n")
    assert (ws.root / "app.py").read_text() == before and not ws.changed
    write_file(ws, "notes.py", "not python at all (\n")  # a new file is the model's own business


def test_edit_ambiguous_match_reports_lines(ws):
    with pytest.raises(ToolError, match=r"occurs 2 times .*lines 2, 6"):
        edit(ws, "app.py", "return a - b", "return a + b")
    assert "a + b" not in (ws.root / "app.py").read_text()


def test_edit_no_match_shows_closest_lines(ws):
    with pytest.raises(ToolError, match=r"not found(.|\n)*most similar lines(.|\n)*1\| def add"):
        edit(ws, "app.py", "def add(x, y):\n    return a - b", "whatever")


def test_edit_tolerates_indentation_differences(ws):
    # The model dropped the indentation: matched line by line, the replacement is re-indented.
    edit(ws, "app.py", "def sub(a, b):\nreturn a - b", "def sub(a, b):\nreturn b - a")
    assert (ws.root / "app.py").read_text().endswith("def sub(a, b):\n    return b - a\n")
    # Extra indentation on the model's side is removed the same way.
    edit(ws, "app.py", "    def add(a, b):\n        return a - b", "    def add(a, b):\n        return a + b")
    assert (ws.root / "app.py").read_text().startswith("def add(a, b):\n    return a + b\n")


def test_write_file_is_atomic_and_keeps_mode(ws):
    script = ws.root / "run.sh"
    script.write_text("echo old\n")
    os.chmod(script, 0o755)
    write_file(ws, "run.sh", "echo new\n")
    assert script.read_text() == "echo new\n" and os.stat(script).st_mode & 0o777 == 0o755
    assert [p.name for p in ws.root.iterdir() if p.name.endswith(".tmp")] == []
    write_file(ws, "pkg/new.py", "x = 1\n")
    assert (ws.root / "pkg/new.py").read_text() == "x = 1\n"


def test_search_honours_gitignore(ws):
    (ws.root / ".gitignore").write_text("build/\n*.log\n")
    (ws.root / "build").mkdir()
    (ws.root / "build" / "gen.py").write_text("def add(): pass\n")
    (ws.root / "debug.log").write_text("def add\n")
    assert glob(ws, "**/*.py") == "app.py"
    hits = grep_search(ws, r"def add")
    assert hits == "app.py:1:def add(a, b):"
    assert "No matches" in grep_search(ws, "nothing_like_this")
    (ws.root / ".qcoder").mkdir()
    assert list_directory(ws).splitlines() == ["build/", ".gitignore", "app.py", "debug.log"]


def test_a_workspace_in_an_ignored_folder_of_a_repository_still_has_its_files(tmp_path):
    """`make run` copies the demo into the repository's ignored runs/: git lists none of its files."""
    import subprocess

    from qcoder.agent.tools.workspace import Workspace

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("/runs/\n")
    root = tmp_path / "runs" / "demo"
    root.mkdir(parents=True)
    (root / "calc.py").write_text("x = 1\n")
    (root / "test_calc.py").write_text("def test_x():\n    pass\n")
    (root / ".gitignore").write_text("*.log\n")
    (root / "debug.log").write_text("noise\n")
    ws = Workspace(root)
    assert sorted(ws.rel(p) for p in ws.files(root)) == [".gitignore", "calc.py", "test_calc.py"]


def test_shell_reports_exit_code_and_caps_output(ws):
    shell = Shell(ws.root, timeout=30)
    result = shell.run("echo hi; exit 3")
    assert result.exit_code == 3 and result.text() == "Exit code: 3\nhi\n"
    long = "".join(f"{i:06d}\n" for i in range(5000))
    capped = cap(long)
    assert capped.startswith("000000") and capped.endswith("004999\n") and "characters omitted" in capped


def test_shell_timeout_kills_the_process_group(ws):
    shell = Shell(ws.root, timeout=30)
    result = shell.run("sleep 300 & echo $! > child.pid; wait", timeout=1)
    assert result.timed_out and "Timed out after 1s" in result.text()
    child = int((ws.root / "child.pid").read_text())
    for _ in range(50):  # the kill is asynchronous; poll until the child is gone
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the background child survived the timeout")


def test_secrets_are_not_passed_to_commands(ws, monkeypatch):
    monkeypatch.setenv("MY_API_KEY", "k1")
    monkeypatch.setenv("GITHUB_TOKEN", "k2")
    monkeypatch.setenv("HARMLESS", "ok")
    monkeypatch.setenv("SHARED_TOKEN", "allowed")
    env = scrubbed_env(["SHARED_TOKEN"])
    assert "MY_API_KEY" not in env and "GITHUB_TOKEN" not in env
    assert env["HARMLESS"] == "ok" and env["SHARED_TOKEN"] == "allowed"
    out = Shell(ws.root, env_allow=["SHARED_TOKEN"]).run("echo ${MY_API_KEY:-none} $SHARED_TOKEN").output
    assert out == "none allowed\n"


def test_sandbox_without_bwrap_refuses(ws, monkeypatch):
    from qcoder.errors import QcoderError

    monkeypatch.setenv("PATH", str(ws.root))
    with pytest.raises(QcoderError, match="bubblewrap"):
        Shell(ws.root, use_sandbox=True)


def test_project_tools_from_settings(ws):
    shell = Shell(ws.root)
    tools = project_tools(Settings(tools={"test": {"command": "echo tested"}, "lint": {"command": "false"}}), shell)
    by_name = {t.name: t for t in tools}
    assert by_name["test"].description == "Run the project's tests (`echo tested`). Takes no arguments: {}."
    assert by_name["test"].parameters["properties"] == {}
    assert by_name["test"].func(args="python -m pytest") == "Exit code: 0\ntested\n"  # stray arguments ignored
    assert by_name["lint"].func().startswith("Exit code: 1")
    (failing,) = project_tools(Settings(tools={"test": {"command": "exit 1"}, "off": {"command": ""}}), shell)
    assert failing.func().endswith("fix it with edit, then call test again.")


def test_tool_decorator_builds_a_schema():
    @tool
    def scale(value: float, times: int = 2, label: str | None = None) -> str:
        """Multiply a number.

        value: the number
        times: how many times
        """
        return f"{label}{value * times}"

    assert scale.name == "scale" and scale.description == "Multiply a number."
    assert scale.parameters == {
        "type": "object",
        "properties": {"value": {"type": "number", "description": "the number"},
                       "times": {"type": "integer", "description": "how many times"},
                       "label": {"type": "string"}},
        "required": ["value"],
    }
    assert scale.func(value=1.5, label="x") == "x3.0"
