"""Permissions, sessions, checkpoints (undo) and settings on real files."""

import subprocess

import pytest

from qcoder.agent.checkpoints import Checkpoints
from qcoder.agent.permissions import Permissions
from qcoder.agent.session import Session
from qcoder.agent.settings import ProjectTool, Settings, load_settings
from qcoder.agent.tools.base import Tool
from qcoder.errors import QcoderError

READ = Tool("read_file", "", {}, lambda: "", "read")
EDIT = Tool("edit", "", {}, lambda: "", "edit")
SHELL = Tool("run_shell_command", "", {}, lambda: "", "shell")
PROJECT = Tool("test", "", {}, lambda: "", "project")


def allowed(perms, tool, args=None):
    return perms.check(tool, args or {}) is None


def test_approval_modes_headless():
    cmd = {"command": "ls"}
    plan, default, auto, yolo = (Permissions(m) for m in ("plan", "default", "auto-edit", "yolo"))
    assert [allowed(p, READ) for p in (plan, default, auto, yolo)] == [True] * 4
    assert [allowed(p, EDIT) for p in (plan, default, auto, yolo)] == [False, False, True, True]
    assert [allowed(p, SHELL, cmd) for p in (plan, default, auto, yolo)] == [False, False, False, True]
    assert [allowed(p, PROJECT) for p in (plan, default, auto, yolo)] == [False, True, True, True]
    assert "headless" in default.check(EDIT, {}) and "'plan'" in plan.check(EDIT, {})


def test_shell_allow_and_deny_prefixes():
    perms = Permissions("default", allow=["git status", "ls"], deny=["rm -rf"])
    assert allowed(perms, SHELL, {"command": "git status --short"})
    assert not allowed(perms, SHELL, {"command": "git statusx"})
    assert not allowed(perms, SHELL, {"command": "ls; curl evil.example"})  # compound: no free pass
    yolo = Permissions("yolo", deny=["rm -rf"])
    assert "deny rule" in yolo.check(SHELL, {"command": "echo hi && rm -rf /"})


def test_interactive_answers():
    answers = iter(["no", "always"])
    perms = Permissions("default", ask=lambda name, args: next(answers))
    assert "declined" in perms.check(EDIT, {})
    assert allowed(perms, EDIT)
    assert allowed(perms, EDIT)  # "always" is remembered without asking again
    with pytest.raises(ValueError, match="unknown approval mode"):
        Permissions("sometimes")


def test_session_roundtrip_and_latest(tmp_path):
    first = Session.new(tmp_path, model="m")
    first.add({"role": "user", "content": "one"})
    second = Session.new(tmp_path, model="m")
    second.add({"role": "user", "content": "two"})
    second.replace([{"role": "user", "content": "folded"}])
    second.add({"role": "assistant", "content": "three"})
    assert Session.load(tmp_path, first.id).messages == [{"role": "user", "content": "one"}]
    assert (tmp_path / ".qcoder" / ".gitignore").read_text() == "sessions/\ncheckpoints.git/\n"
    latest = Session.latest(tmp_path)
    assert latest.id == second.id
    assert [m["content"] for m in latest.messages] == ["folded", "three"]
    with pytest.raises(QcoderError, match="no session"):
        Session.load(tmp_path, "nope")


def test_checkpoints_undo_and_user_git_untouched(tmp_path):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "a.py").write_text("v1\n")
    user_git = sorted(p.name for p in (tmp_path / ".git").iterdir())
    cp = Checkpoints(tmp_path)
    cp.snapshot()
    (tmp_path / "a.py").write_text("v2\n")
    (tmp_path / "new.py").write_text("created\n")
    cp.new_turn()
    cp.snapshot()
    (tmp_path / "a.py").write_text("v3\n")
    assert sorted(cp.undo()) == ["a.py"]
    assert (tmp_path / "a.py").read_text() == "v2\n"
    assert sorted(cp.undo()) == ["a.py", "new.py"]
    assert (tmp_path / "a.py").read_text() == "v1\n" and not (tmp_path / "new.py").exists()
    with pytest.raises(QcoderError, match="nothing to undo"):
        cp.undo()
    assert sorted(p.name for p in (tmp_path / ".git").iterdir()) == user_git
    status = subprocess.run(["git", "status", "--porcelain"], cwd=tmp_path, capture_output=True, text=True).stdout
    assert "?? a.py" in status  # the user's repository still just sees its own untracked file


def test_settings_merge_user_then_workspace_then_env(tmp_path, home, monkeypatch):
    (home / "settings.toml").write_text('approval_mode = "plan"\n[tools.test]\ncommand = "a"\ntimeout = 5\n')
    (tmp_path / ".qcoder").mkdir()
    (tmp_path / ".qcoder" / "settings.toml").write_text('[tools.test]\ncommand = "b"\n')
    settings = load_settings(tmp_path, trusted=True)
    assert settings.tools["test"] == ProjectTool(command="b", timeout=5) and settings.approval_mode == "plan"
    assert load_settings(tmp_path) == Settings(approval_mode="plan")  # untrusted: no workspace file, no commands
    monkeypatch.setenv("QCODER_APPROVAL_MODE", "yolo")
    assert load_settings(tmp_path, trusted=True).approval_mode == "yolo"
    monkeypatch.setenv("QCODER_SHELL_TIMEOUT", "7")
    assert load_settings(tmp_path).command_timeout == 7.0  # wins over [shell] timeout
    (tmp_path / ".qcoder" / "settings.toml").write_text("[broken\n")
    with pytest.raises(QcoderError, match="cannot parse"):
        load_settings(tmp_path, trusted=True)


def test_settings_defaults_and_bad_values(tmp_path, home):
    settings = load_settings(tmp_path)
    assert (settings.max_test_rounds, settings.context_limit, settings.command_timeout) == (3, 32768, 120.0)
    assert settings.tools == {} and settings.permissions.allow == [] and settings.sampling == {}
    (home / "settings.toml").write_text('future_key = 1\n[shell]\ntimeout = "30"\nnew_option = true\n')
    assert load_settings(tmp_path).command_timeout == 30.0  # unknown keys are ignored, "30" is a number
    (home / "settings.toml").write_text('[tools.test]\ncommand = "pytest"\ntimeout = "soon"\n')
    with pytest.raises(QcoderError, match=r"^invalid settings: tools.test.timeout: Input should be a valid number"):
        load_settings(tmp_path, trusted=True)
    (home / "settings.toml").write_text('[permissions]\nallow = "run_shell_command"\n')
    with pytest.raises(QcoderError, match=r"^invalid settings: permissions.allow: Input should be a valid list"):
        load_settings(tmp_path)


def test_memory_files_join_the_workspace_context(workspace, home):
    from qcoder.agent.context import system_prompt, workspace_context

    (home / "QCODER.md").write_text("Always answer in English.")
    (workspace / "AGENTS.md").write_text("Run tests with make check.")
    (workspace / "QWEN.md").write_text("")
    context = workspace_context(workspace)
    assert context.index("Always answer in English.") < context.index("Run tests with make check.")
    assert "QWEN.md\n" not in context.split("# Notes from", 1)[1]
    assert "# Files in the workspace\nAGENTS.md\nQWEN.md\n" in context
    assert "`test` tool" in system_prompt(has_test=True) and "`test` tool" not in system_prompt(has_test=False)


def test_compressor_keeps_task_and_recent_turns():
    from qcoder.agent.context import Compressor
    from qcoder.client import ChatResponse

    class Summarizer:
        def __init__(self):
            self.seen = []

        def chat(self, messages, **kwargs):
            self.seen.append(messages)
            return ChatResponse("did many things")

        def count_tokens(self, text):
            return len(text) // 4

    history = [{"role": "system", "content": "sys"}, {"role": "user", "content": "THE TASK"}]
    for i in range(6):
        history.append({"role": "assistant", "content": "", "tool_calls": [
            {"id": f"c{i}", "type": "function", "function": {"name": "read_file", "arguments": "{}"}}]})
        history.append({"role": "tool", "tool_call_id": f"c{i}", "content": "x" * 800})
    client = Summarizer()
    compressor = Compressor(client, limit=1000, keep_recent=3)
    assert compressor.needed(history)
    folded = compressor.compress(history)
    assert folded[:2] == history[:2] and "did many things" in folded[2]["content"]
    assert folded[3]["role"] == "assistant" and folded[3:] == history[-2:]  # never starts on an orphan result
    assert "THE TASK" not in client.seen[0][1]["content"] and "read_file" in client.seen[0][1]["content"]
    assert not compressor.needed(folded)


def test_settings_directory_precedence(monkeypatch, tmp_path):
    from qcoder.agent.settings import user_dir

    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    for name in ("QCODER_CONFIG", "QCODER_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    assert user_dir() == tmp_path / "user" / ".qcoder"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert user_dir() == tmp_path / "user" / ".qcoder"  # no XDG folder for qcoder yet
    (tmp_path / "xdg" / "qcoder").mkdir(parents=True)
    assert user_dir() == tmp_path / "xdg" / "qcoder"
    monkeypatch.setenv("QCODER_HOME", str(tmp_path / "old"))  # the old name still works
    assert user_dir() == tmp_path / "old"
    monkeypatch.setenv("QCODER_CONFIG", str(tmp_path / "config"))
    assert user_dir() == tmp_path / "config"
