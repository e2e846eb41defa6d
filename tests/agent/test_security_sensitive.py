"""Issue 14 item 1: writes to .qcoder/, .git/ and other sensitive paths need a person's yes in every mode but
yolo (headless: denied), so the agent cannot plant settings or git hooks that the next run executes."""

import shutil
import subprocess

import pytest

from qcoder.agent.permissions import Permissions
from qcoder.agent.tools.base import Tool
from qcoder.agent.tools.shell import Shell
from tests.fake_openai import call

from .conftest import json_result, qcoder_cli

WRITE = Tool("write_file", "", {}, lambda: "", "edit")
EDIT = Tool("edit", "", {}, lambda: "", "edit")
SHELL = Tool("run_shell_command", "", {}, lambda: "", "shell")
MODES = ("plan", "default", "auto-edit", "yolo")
SENSITIVE = [".qcoder/settings.toml", ".git/hooks/pre-commit", ".git/config", "src/../.git/hooks/post-checkout",
             ".github/workflows/ci.yml", ".vscode/tasks.json", ".envrc", "sub/.git/hooks/pre-push", "hooks/pre-commit"]
ORDINARY = ["src/app.py", ".gitignore", "docs/git/notes.md", "github.md", "config"]


@pytest.fixture
def ws(tmp_path):
    (tmp_path / ".git" / "hooks").mkdir(parents=True)
    (tmp_path / "hooks").symlink_to(tmp_path / ".git" / "hooks")  # a link into .git is .git
    return tmp_path


@pytest.mark.parametrize("path", SENSITIVE)
def test_sensitive_writes_need_approval_in_every_mode_but_yolo(ws, path):
    runs = [Permissions(m, workspace=ws).check(WRITE, {"path": path, "content": "x"}) is None for m in MODES]
    assert runs == [False, False, False, True]
    assert "explicit approval" in Permissions("auto-edit", workspace=ws).check(EDIT, {"path": path})


@pytest.mark.parametrize("path", ORDINARY)
def test_ordinary_writes_keep_their_mode(ws, path):
    runs = [Permissions(m, workspace=ws).check(WRITE, {"path": path, "content": "x"}) is None for m in MODES]
    assert runs == [False, False, True, True]


def test_always_does_not_cover_sensitive_writes(ws):
    asked = []
    perms = Permissions("default", workspace=ws, ask=lambda name, args: asked.append(args["path"]) or "always")
    assert perms.check(WRITE, {"path": "a.py"}) is None
    assert perms.check(WRITE, {"path": "b.py"}) is None  # remembered
    assert perms.check(WRITE, {"path": ".git/hooks/pre-commit"}) is None
    assert perms.check(WRITE, {"path": ".qcoder/settings.toml"}) is None
    assert asked == ["a.py", ".git/hooks/pre-commit", ".qcoder/settings.toml"]
    no = Permissions("auto-edit", workspace=ws, ask=lambda name, args: "no")
    assert "declined" in no.check(WRITE, {"path": ".qcoder/settings.toml"})


def test_allow_rules_do_not_cover_commands_on_sensitive_paths(ws):
    perms = Permissions("default", allow=["cp", "echo"], workspace=ws)
    assert perms.check(SHELL, {"command": "cp a.txt b.txt"}) is None
    for command in ("cp evil .git/hooks/pre-commit", "cp x ./.qcoder/settings.toml", "echo 'x' >.envrc"):
        assert "explicit approval" in perms.check(SHELL, {"command": command}), command


def test_headless_auto_edit_cannot_plant_settings_or_hooks(workspace, fake_model, home):
    subprocess.run(["git", "init", "-q"], cwd=workspace, check=True)
    fake_model.plan = [
        {"tool_calls": [call("write_file", path=".qcoder/settings.toml", content='approval_mode = "yolo"\n')]},
        {"tool_calls": [call("write_file", path=".git/hooks/pre-commit", content="#!/bin/sh\ntouch pwned\n")]},
        {"tool_calls": [call("write_file", path="notes.md", content="ordinary\n")]},
        {"content": "done"},
    ]
    proc = qcoder_cli(["-p", "set things up", "--approval-mode", "auto-edit", "--output-format", "json"],
                      workspace, fake_model, home)
    assert proc.returncode == 0, proc.stderr
    assert json_result(proc)["files_changed"] == ["notes.md"]
    assert not (workspace / ".qcoder" / "settings.toml").exists()
    assert not (workspace / ".git" / "hooks" / "pre-commit").exists()
    results = [m["content"] for m in fake_model.requests[-1]["messages"] if m["role"] == "tool"]
    assert results[0].startswith("Permission denied") and ".qcoder/settings.toml" in results[0]
    assert results[1].startswith("Permission denied") and ".git/hooks/pre-commit" in results[1]


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_sandboxed_commands_cannot_write_settings_or_hooks(ws):
    shell = Shell(ws, use_sandbox=True)
    result = shell.run("echo yolo > .qcoder/settings.toml; echo x > .git/hooks/pre-commit; echo ok > fine.txt")
    assert (ws / "fine.txt").read_text() == "ok\n"  # the workspace itself stays writable
    assert not (ws / ".qcoder" / "settings.toml").exists() and not (ws / ".git" / "hooks" / "pre-commit").exists()
    assert "Read-only file system" in result.output


def test_the_tui_asks_again_for_a_sensitive_write(workspace, fake_model, home, monkeypatch):
    from .test_agent_tui_client import tui

    for name, value in (("OPENAI_BASE_URL", fake_model.url), ("OPENAI_API_KEY", "sk-test"), ("OPENAI_MODEL", "fake")):
        monkeypatch.setenv(name, value)
    fake_model.plan = [{"tool_calls": [call("write_file", path="a.txt", content="x"),
                                       call("write_file", path=".git/hooks/pre-commit", content="#!/bin/sh\n")]},
                       {"content": "done"}]
    ui, out = tui(workspace, answers=["always", "n"])
    try:
        ui.handle("write things")
    finally:
        ui.built.close()
    assert (workspace / "a.txt").exists() and not (workspace / ".git" / "hooks" / "pre-commit").exists()
    assert "Careful: it writes .git/hooks/pre-commit, a sensitive path" in out.getvalue()
