"""Issue 14 item 2: grep_search and glob stay inside the workspace, with or without ripgrep, in a git
repository or not. They run unapproved even in plan mode, so a symlink must not lead them out."""

import shutil
import subprocess

import pytest

from qcoder.agent.tools import search
from qcoder.agent.tools.base import ToolError
from qcoder.agent.tools.workspace import Workspace


@pytest.fixture(params=["python", "ripgrep"])
def searcher(request, monkeypatch):
    if request.param == "python":
        monkeypatch.setattr(search.shutil, "which", lambda name: None)
    elif shutil.which("rg") is None:
        pytest.skip("ripgrep is not installed")
    return request.param


@pytest.fixture(params=["plain", "git"])
def tree(request, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("TOPSECRET token\n")
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "app.txt").write_text("hello TOPSECRET-free world\n")
    (ws / "link.txt").symlink_to(outside / "secret.txt")
    (ws / "linkdir").symlink_to(outside)
    (ws / "inner.txt").symlink_to(ws / "src" / "app.txt")  # a link that stays inside is fine
    if request.param == "git":
        subprocess.run(["git", "init", "-q"], cwd=ws, check=True)
        subprocess.run(["git", "add", "-A"], cwd=ws, check=True)
    return Workspace(ws)


def test_grep_does_not_follow_links_out(tree, searcher):
    found = search.grep_search(tree, "TOPSECRET")
    assert "token" not in found and "secret" not in found and "link" not in found, found
    assert "src/app.txt:1:hello TOPSECRET-free world" in found
    assert "No matches" in search.grep_search(tree, "token")
    for path in ("link.txt", "linkdir", "../outside"):
        with pytest.raises(ToolError, match="outside the workspace"):
            search.grep_search(tree, "TOPSECRET", path=path)


def test_glob_does_not_list_links_out(tree, searcher):
    listed = search.glob(tree, "**/*.txt").splitlines()
    assert "link.txt" not in listed and not any(p.startswith("linkdir") for p in listed), listed
    assert "src/app.txt" in listed
    with pytest.raises(ToolError, match="outside the workspace"):
        search.glob(tree, "*", path="linkdir")


def test_ripgrep_output_is_confined_too(tree, monkeypatch, tmp_path):
    """Even an rg that follows links (or a stale one) cannot report a file outside: its hits are checked."""
    if shutil.which("rg") is None:
        pytest.skip("ripgrep is not installed")
    real = shutil.which("rg")
    wrapper = tmp_path / "bin" / "rg"
    wrapper.parent.mkdir()
    # Drop our --no-follow and add --follow: this rg walks into linkdir and reads link.txt.
    wrapper.write_text('#!/bin/sh\nfor a; do shift; [ "$a" = --no-follow ] || set -- "$@" "$a"; done\n'
                       f'exec {real} --follow "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}:/usr/bin:/bin")
    assert "token" not in search.grep_search(tree, "TOPSECRET")
