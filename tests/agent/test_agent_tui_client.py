"""The TUI's command handling (in-process, scripted input) and the chat client against the fake model."""

import argparse
import io

import pytest
from rich.console import Console

from qcoder.agent import commands
from qcoder.agent.tui import Tui
from qcoder.client import OpenAIClient
from qcoder.errors import QcoderError
from tests.fake_openai import call


def tui(workspace, answers=()):
    parser = argparse.ArgumentParser()
    commands.add_arguments(parser)
    args = parser.parse_args(["--workspace", str(workspace)])
    out = io.StringIO()
    replies = iter(answers)
    return Tui(args, Console(file=out, width=200, color_system=None), read_line=lambda _: next(replies)), out


@pytest.fixture
def model_env(fake_model, monkeypatch, home):
    monkeypatch.setenv("OPENAI_BASE_URL", fake_model.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_MODEL", "fake")
    return fake_model


def test_undo_restores_files_after_an_approved_turn(workspace, model_env):
    (workspace / "notes.txt").write_text("original\n")
    model_env.plan = [
        {"tool_calls": [call("write_file", path="notes.txt", content="changed\n"),
                        call("write_file", path="extra.txt", content="new\n")]},
        {"content": "Rewrote the notes."},
    ]
    ui, out = tui(workspace, answers=["y", "always"])
    assert ui.handle("Rewrite the notes")
    assert (workspace / "notes.txt").read_text() == "changed\n" and (workspace / "extra.txt").exists()
    text = out.getvalue()
    assert "Allow write_file" in text and "+changed" in text and "Rewrote the notes." in text
    assert "success: answered" in text and "2 turns" in text
    ui.handle("/undo")
    assert (workspace / "notes.txt").read_text() == "original\n" and not (workspace / "extra.txt").exists()
    assert "restored 2 file(s)" in out.getvalue()
    ui.handle("/undo")
    assert "nothing to undo" in out.getvalue()


def test_declined_write_leaves_the_file(workspace, model_env):
    model_env.plan = [{"tool_calls": [call("write_file", path="a.txt", content="x")]}, {"content": "ok"}]
    ui, _ = tui(workspace, answers=["n"])
    ui.handle("Write a.txt")
    assert not (workspace / "a.txt").exists()
    assert model_env.requests[1]["messages"][-1]["content"] == "The user declined this write_file call."


def test_slash_commands(workspace, model_env):
    ui, out = tui(workspace)
    ui.handle("/tools")
    ui.handle("/approval auto-edit")
    ui.handle("/approval never")
    ui.handle("/model other-model")
    first_session = ui.agent.session.id
    ui.handle("/clear")
    ui.handle("/compress")
    ui.handle("/bogus")
    text = out.getvalue()
    assert "read_file (read)" in text and "run_shell_command (shell)" in text
    assert ui.agent.permissions.mode == "auto-edit" and "unknown mode 'never'" in text
    assert ui.agent.client.model == "other-model"
    assert ui.agent.session.id != first_session and len(ui.agent.messages) == 1
    assert "nothing to compress yet" in text and "unknown command /bogus" in text
    assert ui.handle("/quit") is False


def test_client_plain_streaming_and_retries(fake_model):
    client = OpenAIClient(model="fake", base_url=fake_model.url, api_key="k", backoff=0.01)
    fake_model.plan = [
        {"status": 503},
        {"content": "Hi", "tool_calls": [call("read_file", path="a.py")]},
        {"content": "Streamed text", "tool_calls": [call("edit", path="b.py", old_string="x", new_string="y")]},
    ]
    plain = client.chat([{"role": "user", "content": "hi"}], temperature=0.1, top_k=20, seed=1)
    assert plain.content == "Hi" and plain.finish_reason == "tool_calls"
    assert plain.tool_calls[0].name == "read_file" and plain.tool_calls[0].arguments == '{"path": "a.py"}'
    assert plain.usage["prompt_tokens"] >= 0 and plain.usage["completion_tokens"] > 0
    assert fake_model.requests[1]["top_k"] == 20 and fake_model.requests[1]["seed"] == 1
    pieces = []
    streamed = client.chat([{"role": "user", "content": "go"}], on_delta=pieces.append)
    assert "".join(pieces) == "Streamed text" and len(pieces) > 1
    assert streamed.tool_calls[0].name == "edit"
    assert streamed.tool_calls[0].arguments == '{"path": "b.py", "old_string": "x", "new_string": "y"}'
    assert streamed.usage["completion_tokens"] > 0


def test_client_gives_up_with_a_clear_error(fake_model):
    client = OpenAIClient(model="fake", base_url=fake_model.url, api_key="k", retries=2, backoff=0.01)
    fake_model.plan = [{"status": 500}] * 3
    with pytest.raises(QcoderError, match="failed after 3 attempts"):
        client.chat([{"role": "user", "content": "hi"}])
    fake_model.plan = [{"status": 400}]
    with pytest.raises(QcoderError, match="error 400"):
        client.chat([{"role": "user", "content": "hi"}])
