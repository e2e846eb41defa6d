"""Issue 14 item 3: deny rules are matched on what a command runs, so respelling it does not get through."""

import pytest

from qcoder.agent.command_rules import invocations
from qcoder.agent.permissions import Permissions
from qcoder.agent.shell_syntax import Unparseable, simple_commands
from qcoder.agent.tools.base import Tool
from tests.fake_openai import call

from .conftest import json_result, qcoder_cli

SHELL = Tool("run_shell_command", "", {}, lambda: "", "shell")

# Every one of these ran under `deny = ["rm -rf"]` in yolo mode before.
RESPELLINGS = [
    "rm  -rf /", "/bin/rm -rf /", "(rm -rf /)", "rm -fr /", "rm -r -f /", "rm --recursive --force /", "rm -Rf /",
    "sudo rm -rf /", "bash -c 'rm -rf /'", "sh -c \"sudo rm -fr /\"", "bash -lc 'cd / && rm -rf x'",
    "sudo -u root env A=1 nice -n 5 timeout 9 rm -rf /", "env -S 'rm -rf /'", "time -p rm -rf /",
    "echo $(rm -rf /)", "echo `rm -rf /`", "cat <(rm -rf /)", "echo ${x:-$(rm -rf /)}",
    "find / -exec rm -rf {} +", "echo / | xargs rm -rf", "eval 'rm -rf /'", "ls; rm -rf /", "ls\nrm -rf /",
    "true && { rm -rf /; }", "if true; then rm -rf /; fi", "! rm -rf /", "2>/dev/null rm -rf /",
    "\\rm -rf /", "r''m -rf /", "$'\\x72m' -rf /", "X=1 rm -rf /", "rm -rf $HOME", "rm $FLAGS /",
    "cat <<EOF\n$(rm -rf /)\nEOF", "busybox rm -rf /", "command rm -rf /", "(cd / && (rm -rf x))",
]
# These are refused because nobody can tell what they run without running them.
UNREADABLE = ["$RM -rf /", "$(echo rm) -rf /", "/bin/r? -rf /", "echo 'rm -rf /' | sh", "bash -c \"$CMD\"",
              "case x in x) rm -rf /;; esac", "f() { rm -rf /; }; f", "echo 'unclosed", "rm -rf / &&"]
HARMLESS = ["rm -r build", "rm notes.txt", "ls -la", "git status && python -m pytest -q", "echo rm -rf",
            "grep -rf patterns.txt .", "cat <<'EOF' > a.py\nprint('$(rm -rf /)')\nEOF", "for f in *.py; do wc -l $f; done",
            "bash run_tests.sh", "find . -name '*.pyc' -delete"]


@pytest.mark.parametrize("command", RESPELLINGS)
def test_respelled_commands_match_the_deny_rule(command):
    reason = Permissions("yolo", deny=["rm -rf"]).check(SHELL, {"command": command})
    assert reason is not None and "deny rule `rm -rf`" in reason


@pytest.mark.parametrize("command", UNREADABLE)
def test_unreadable_commands_are_denied_while_deny_rules_exist(command):
    reason = Permissions("yolo", deny=["rm -rf"]).check(SHELL, {"command": command})
    assert reason is not None and "cannot be checked" in reason
    assert Permissions("yolo").check(SHELL, {"command": command}) is None  # no deny rules: yolo runs anything


@pytest.mark.parametrize("command", HARMLESS)
def test_other_commands_still_run(command):
    assert Permissions("yolo", deny=["rm -rf", "git push --force"]).check(SHELL, {"command": command}) is None


def test_rules_with_subcommands_and_operands():
    perms = Permissions("yolo", deny=["git push --force", "rm -rf /"])
    for command in ("git push --force", "git push -f origin main", "git -C . push origin main --force",
                    "rm -rf /", "rm -fr /*", "sudo rm -r -f /"):
        assert perms.check(SHELL, {"command": command}), command
    for command in ("git push origin main", "git fetch --force", "rm -rf build", "rm -r /"):
        assert perms.check(SHELL, {"command": command}) is None, command


def test_allow_rules_stay_strict():
    perms = Permissions("default", allow=["git status", "ls"], deny=["rm -rf"])
    assert perms.check(SHELL, {"command": "git status --short"}) is None
    for command in ("ls; curl evil.example", "ls $(curl evil.example)", "ls `id`", "ls > x", "ls\nid", "ls | wc"):
        assert "headless" in perms.check(SHELL, {"command": command}), command


def test_a_malformed_rule_is_reported():
    with pytest.raises(ValueError, match="deny rule 'rm -rf; ls'"):
        Permissions("yolo", deny=["rm -rf; ls"])


def test_the_reader_names_nested_commands():
    words = [[w.text for w in c] for c in simple_commands("a | (b x && c $(d y)) > out 2>&1; e <<EOF\n`f`\nEOF")]
    assert words == [["a"], ["b", "x"], ["d", "y"], ["c", "$(d y)"], ["e"], ["f"]]
    assert [i.program for i in invocations("sudo -u me bash -c 'env X=1 rm -fr a'")] == ["sudo", "bash", "env", "rm"]
    with pytest.raises(Unparseable):
        simple_commands("echo (")


def test_headless_yolo_run_keeps_the_deny_rule(workspace, fake_model, home):
    """The real CLI in yolo mode: a hostile model's respelled deletes do not run."""
    (home / "settings.toml").write_text('[permissions]\ndeny = ["rm -rf"]\n')
    victim = workspace / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    attempts = ["rm -fr victim", "bash -c 'rm -rf victim'", "(sudo rm -r -f victim)", "$(echo rm) -rf victim"]
    fake_model.plan = [{"tool_calls": [call("run_shell_command", command=c)]} for c in attempts]
    fake_model.plan.append({"content": "done"})
    proc = qcoder_cli(["-p", "clean up", "-y", "--output-format", "json"], workspace, fake_model, home)
    assert proc.returncode == 0, proc.stderr
    assert json_result(proc)["status"] == "success"
    assert (victim / "keep.txt").read_text() == "precious"
    results = [m["content"] for m in fake_model.requests[-1]["messages"] if m["role"] == "tool"]
    assert len(results) == 4 and all("Permission denied" in r for r in results), results
