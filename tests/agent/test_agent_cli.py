"""The real `qcoder` CLI (subprocess) driving the real loop and tools against the scripted fake model."""

import json
import shutil
import sys

import pytest

from qcoder.agent.trust import remember
from tests.fake_openai import call

from .conftest import EXAMPLE, json_result, qcoder_cli

FIX = ("textstats.py", "    return min(found, key=len)", "    return max(found, key=len)")


@pytest.fixture
def project(tmp_path, home):
    path = tmp_path / "textstats"
    shutil.copytree(EXAMPLE / "textstats", path)
    with open(path / ".qcoder" / "settings.toml", "a") as settings:  # these tests script the general loop
        settings.write("\n[repair]\nenabled = false\n")
    remember(home, path.resolve(), True)  # the user trusts the demo project: its test tool applies
    return path


def tool_messages(request):
    return [m for m in request["messages"] if m["role"] == "tool"]


def test_fixes_the_failing_test_end_to_end(project, fake_model, home):
    fake_model.plan = [
        {"content": "Let me look.", "tool_calls": [call("read_file", path="textstats.py")]},
        {"tool_calls": [call("edit", path=FIX[0], old_string=FIX[1], new_string=FIX[2])]},
        {"tool_calls": [call("test")]},
        {"content": "Fixed: longest_word used min instead of max."},
    ]
    proc = qcoder_cli(["-p", "Fix the failing test", "-y", "--output-format", "json"], project, fake_model, home)
    assert proc.returncode == 0, proc.stderr
    result = json_result(proc)
    assert result["status"] == "success"
    assert result["final_message"] == "Fixed: longest_word used min instead of max."
    assert result["turns"] == 4 and result["tool_calls"] == 3
    assert result["files_changed"] == ["textstats.py"]
    assert result["test_result"]["passed"] is True
    assert result["tokens"]["prompt_tokens"] > 0
    assert "return max(found, key=len)" in (project / "textstats.py").read_text()
    # What the model saw: the file with line numbers, the diff, then the passing test run.
    last = fake_model.requests[-1]
    results = [m["content"] for m in tool_messages(last)]
    assert "return min(found, key=len)" in results[0] and "|" in results[0]
    assert "+    return max(found, key=len)" in results[1]
    assert results[2].startswith("Exit code: 0") and "4 passed" in results[2]
    system, first = last["messages"][:2]
    assert system["role"] == "system" and "`test` tool" in system["content"]
    assert str(project) not in system["content"]  # the same system turn everywhere: the engine keeps it on disk
    assert first["role"] == "user" and first["content"].startswith(f"# Workspace\n{project}\n\n")
    assert "# Files in the workspace\nREADME.md\ntest_textstats.py\ntextstats.py" in first["content"]
    assert first["content"].endswith("\n\n# Task\nFix the failing test")
    assert {t["function"]["name"] for t in last["tools"]} >= {"read_file", "edit", "test", "run_shell_command"}


def test_failed_edit_is_reported_and_recovered(project, fake_model, home):
    fake_model.plan = [
        {"tool_calls": [call("edit", path="textstats.py", old_string="return min(words, key=len)",
                             new_string="return max(words, key=len)")]},
        {"tool_calls": [call("edit", path=FIX[0], old_string=FIX[1], new_string=FIX[2])]},
        {"content": "Done."},
    ]
    proc = qcoder_cli(["-p", "Fix the failing test", "-y", "--output-format", "json"], project, fake_model, home)
    assert proc.returncode == 0, proc.stderr
    first_result = tool_messages(fake_model.requests[1])[0]["content"]
    assert first_result.startswith("Error: old_string was not found in textstats.py")
    assert "return min(found, key=len)" in first_result  # the closest lines are shown
    assert json_result(proc)["test_result"]["passed"] is True


def test_unfixed_tests_are_fed_back_then_reported(project, fake_model, home):
    fake_model.plan = [{"tool_calls": [call("edit", path="textstats.py", old_string="the first one wins",
                                            new_string="the earliest one wins")]},
                       {"content": "I think it works."}, {"content": "Still sure."}]
    proc = qcoder_cli(["-p", "Fix the failing test", "-y", "--output-format", "json"], project, fake_model, home,
                      env={"QCODER_MAX_TEST_ROUNDS": "1"})
    result = json_result(proc)
    assert proc.returncode == 1
    assert result["status"] == "failure" and "tests still fail" in result["reason"]
    assert result["test_result"]["passed"] is False
    feedback = fake_model.requests[2]["messages"][-1]
    assert feedback["role"] == "user" and "test_longest_word" in feedback["content"]


TEXT_CALLS = {
    "hermes-json": '<tool_call>\n{"name": "read_file", "arguments": {"path": "textstats.py"}}\n</tool_call>',
    "qwen3-xml": "<tool_call>\n<function=read_file>\n<parameter=path>\ntextstats.py\n</parameter>\n</function>\n"
                 "</tool_call>",
    "fenced-json": '```json\n{"name": "read_file", "arguments": {"path": "textstats.py"}}\n```',
    "missing-brace": '{"name": "read_file", "arguments": {"path": "textstats.py"}',
    "several-lines": '{"name": "read_file", "arguments": {"path": "textstats.py"}}\n{"name": "test", "arguments": {}}',
    "prose-and-fences": 'First I read the file.\n\n```json\n{"name": "read_file", "arguments": {"path": "textstats.py"}}'
                        '\n```\n\nThen I run the tests:\n\n```json\n{"name": "test"}\n```\n\nIf they fail, I fix them.',
    "call-then-prose": '{"name": "read_file", "arguments": {"path": "textstats.py"}}\n\nThis reads the file.',
    "tag-remnant": '>{"name": "read_file", "arguments": {"path": "textstats.py"}}',
    "bare-function": "<function=read_file>\n<parameter=path>\ntextstats.py\n</parameter>\n</function>",
}


@pytest.mark.parametrize("style", sorted(TEXT_CALLS))
def test_tool_calls_printed_as_text_are_rescued(style, project, fake_model, home):
    fake_model.plan = [{"content": TEXT_CALLS[style]}, {"content": "It has four functions."}]
    proc = qcoder_cli(["-p", "What is in textstats.py?", "--output-format", "json"], project, fake_model, home)
    assert proc.returncode == 0, proc.stderr
    messages = fake_model.requests[1]["messages"]
    assistant = messages[-2]
    assert assistant["tool_calls"][0]["function"]["name"] == "read_file"
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"path": "textstats.py"}
    assert "<tool_call>" not in (assistant["content"] or "")
    assert messages[-1]["role"] == "tool" and "def longest_word" in messages[-1]["content"]
    checks = json_result(proc)["call_checks"]
    assert checks["rescued"] >= 1 and checks["valid"] >= 1, checks


def test_malformed_calls_get_precise_errors(project, fake_model, home, tmp_path):
    (tmp_path / "outside.txt").write_text("secret")
    fake_model.plan = [
        {"tool_calls": [call("delete_everything"), call("read_file"), ("edit", "{not json"),
                        call("read_file", path="../outside.txt"), call("read_file", path=str(tmp_path / "outside.txt")),
                        call("read_file", path="textstats.py", offset="ten")]},
        {"content": "Sorry."},
    ]
    proc = qcoder_cli(["-p", "Look around", "--output-format", "json"], project, fake_model, home)
    assert proc.returncode == 0, proc.stderr
    results = [m["content"] for m in tool_messages(fake_model.requests[1])]
    assert results[0].startswith("Error: unknown tool 'delete_everything'. Available tools: read_file")
    assert results[1].startswith("Error:") and "path" in results[1]
    assert results[2].startswith("Error: the arguments of edit are not valid JSON")
    assert "outside the workspace" in results[3] and "outside the workspace" in results[4]
    assert results[5].startswith("Error:") and "'offset' must be integer" in results[5]
    assert all("secret" not in r for r in results)
    # the two outside-the-workspace reads are well-formed calls that the tool itself refuses
    assert json_result(proc)["call_checks"] == {"valid": 2, "invalid": 4, "rescued": 0}


def test_headless_default_mode_denies_writes_and_commands(project, fake_model, home):
    fake_model.plan = [
        {"tool_calls": [call("write_file", path="new.txt", content="x"), call("run_shell_command", command="touch t")]},
        {"content": "Could not."},
    ]
    proc = qcoder_cli(["-p", "Make files", "--output-format", "json"], project, fake_model, home)
    assert proc.returncode == 0, proc.stderr
    results = [m["content"] for m in tool_messages(fake_model.requests[1])]
    assert all(r.startswith("Permission denied") and "headless" in r for r in results)
    assert not (project / "new.txt").exists() and not (project / "t").exists()


def test_plan_mode_is_read_only_even_for_project_tools(project, fake_model, home):
    fake_model.plan = [{"tool_calls": [call("test"), call("read_file", path="textstats.py")]}, {"content": "ok"}]
    qcoder_cli(["-p", "Plan", "--approval-mode", "plan", "--output-format", "json"], project, fake_model, home)
    results = [m["content"] for m in tool_messages(fake_model.requests[1])]
    assert "'plan'" in results[0] and "def words" in results[1]


def test_repeated_identical_calls_nudge_then_stop(project, fake_model, home):
    # Keys the tool does not take do not make a call different.
    fake_model.plan = [{"tool_calls": [call("list_directory", path=".", note=n)]} for n in range(4)]
    proc = qcoder_cli(["-p", "Loop", "--output-format", "json"], project, fake_model, home)
    result = json_result(proc)
    assert proc.returncode == 1 and result["status"] == "failure"
    assert "repeated the identical call list_directory" in result["reason"]
    second = tool_messages(fake_model.requests[2])[-1]["content"]
    assert "exact call 2 times in a row" in second
    assert len(fake_model.requests) == 3


def test_turn_limit(project, fake_model, home):
    fake_model.plan = [{"tool_calls": [call("read_file", path="textstats.py", offset=n)]} for n in range(1, 9)]
    proc = qcoder_cli(["-p", "Read forever", "--max-turns", "3", "--output-format", "json"], project, fake_model,
                      home)
    result = json_result(proc)
    assert proc.returncode == 3 and result["status"] == "limit" and result["turns"] == 3
    assert "turn limit" in result["reason"]


def test_stream_json_events(project, fake_model, home):
    fake_model.plan = [
        {"content": "Reading.", "tool_calls": [call("read_file", path="textstats.py")]},
        {"content": "All good here."},
    ]
    proc = qcoder_cli(["-p", "Check", "--output-format", "stream-json"], project, fake_model, home)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    types = [e["type"] for e in events]
    assert types[-1] == "final" and events[-1]["status"] == "success"
    assert "tool_call" in types and "tool_result" in types
    deltas = "".join(e["text"] for e in events if e["type"] == "delta")
    assert deltas == "Reading.All good here."


def test_task_from_stdin_and_text_output(project, fake_model, home):
    fake_model.plan = [{"content": "Hello from the model."}]
    proc = qcoder_cli([], project, fake_model, home, stdin="Say hello\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Hello from the model.\n"
    first = fake_model.requests[0]["messages"][1]
    assert first["role"] == "user" and first["content"].endswith("\n\n# Task\nSay hello")


def test_continue_and_resume(project, fake_model, home):
    fake_model.plan = [{"content": "First answer."}, {"content": "Second answer."}, {"content": "Third."}]
    first = json_result(qcoder_cli(["-p", "TASK ONE", "--output-format", "json"], project, fake_model, home))
    second = json_result(qcoder_cli(["-p", "TASK TWO", "-c", "--output-format", "json"], project, fake_model, home))
    assert second["session_id"] == first["session_id"]
    contents = [m["content"] for m in fake_model.requests[1]["messages"]]
    assert contents[1].endswith("# Task\nTASK ONE") and contents[2:] == ["First answer.", "TASK TWO"]
    qcoder_cli(["-p", "TASK THREE", "--resume", first["session_id"], "--output-format", "json"], project,
               fake_model, home)
    assert [m["content"] for m in fake_model.requests[2]["messages"]][-2:] == ["Second answer.", "TASK THREE"]
    proc = qcoder_cli(["-p", "x", "--resume", "nope"], project, fake_model, home)
    assert proc.returncode == 2 and "no session 'nope'" in proc.stderr


def test_compression_keeps_the_task(project, fake_model, home):
    def reply(body):
        if body["messages"][0]["content"].startswith("Summarise"):
            return {"content": "Read textstats.py several times."}
        return {"tool_calls": [call("read_file", path="textstats.py", offset=len(body["messages"]))]}

    fake_model.plan = [reply] * 7 + [{"content": "Done reading."}]
    proc = qcoder_cli(["-p", "TASK: read carefully", "--output-format", "stream-json"], project, fake_model, home,
                      env={"QCODER_CONTEXT_LIMIT": "1500"})
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert any(e["type"] == "compressed" for e in events)
    summaries = [r for r in fake_model.requests if r["messages"][0]["content"].startswith("Summarise")]
    assert summaries and "tools" not in summaries[0]
    after = fake_model.requests[fake_model.requests.index(summaries[0]) + 1]["messages"]
    assert after[1]["content"].endswith("# Task\nTASK: read carefully")
    assert after[2]["content"].startswith("Summary of the earlier part") and "several times" in after[2]["content"]
    assert after[3]["role"] != "tool"


def test_mcp_tool_in_the_loop(project, fake_model, home):
    from .test_agent_extensions import MCP_SERVER

    (project / "server.py").write_text(MCP_SERVER)
    settings = project / ".qcoder" / "settings.toml"
    settings.write_text(settings.read_text() + f'\n[mcp_servers.calc]\ncommand = {json.dumps(sys.executable)}\n'
                        'args = ["server.py"]\n')
    fake_model.plan = [{"tool_calls": [call("calc__multiply", a=6, b=7)]}, {"content": "42"}]
    proc = qcoder_cli(["-p", "Multiply", "-y", "--output-format", "json"], project, fake_model, home)
    assert proc.returncode in (0, 1), proc.stderr  # the example's tests still fail; that is not the point here
    assert "calc__multiply" in {t["function"]["name"] for t in fake_model.requests[0]["tools"]}
    assert tool_messages(fake_model.requests[1])[0]["content"] == "42"


def test_sandbox_without_bubblewrap_is_refused(project, fake_model, home):
    if shutil.which("bwrap"):
        pytest.skip("bubblewrap is installed here")
    proc = qcoder_cli(["-p", "x", "--sandbox"], project, fake_model, home)
    assert proc.returncode == 2 and "bubblewrap" in proc.stderr and not fake_model.requests


def test_unusable_tool_calls_get_told_why(project, fake_model, home):
    fake_model.plan = [
        {"content": '<tool_call>\n{"name": "read_file", "argu'},
        {"content": '{"name": "test_textstats.py", "arguments": {}}\n{"name": "test", "arguments": {}}'},
        {"content": 'Run {"name": "test", "arguments": {}} then {"name": "test", "arguments": {}}'},
        {"content": '{"name": "edit", "arguments": {"old_string": "a", "new_string": "b"}}'},
        {"content": "Giving up."},
    ]
    proc = qcoder_cli(["-p", "Read", "--output-format", "json"], project, fake_model, home)
    assert proc.returncode == 0, proc.stderr
    feedback = [fake_model.requests[i]["messages"][-1] for i in (1, 2, 3)]
    assert all(f["role"] == "user" and "Reply with exactly one call" in f["content"] for f in feedback)
    assert "truncated or malformed" in feedback[0]["content"]
    assert "no tool named 'test_textstats.py'" in feedback[1]["content"]
    assert "single" in feedback[2]["content"]
    missing = fake_model.requests[4]["messages"][-1]  # a whole call that does not fit its schema is run_tool's
    assert missing["role"] == "tool" and "missing required parameter 'path'" in missing["content"]
    assert json_result(proc)["turns"] == 5


def test_token_limit(project, fake_model, home):
    fake_model.plan = [{"tool_calls": [call("read_file", path="textstats.py", offset=n)]} for n in range(1, 9)]
    proc = qcoder_cli(["-p", "Read", "--max-tokens", "1", "--output-format", "json"], project, fake_model, home)
    result = json_result(proc)
    assert proc.returncode == 3 and result["turns"] == 1 and "token limit" in result["reason"]


def test_the_same_unusable_reply_three_times_stops(project, fake_model, home):
    fake_model.plan = [{"content": '{"name": "words", "arguments": {"text": "x"}}'}] * 4
    proc = qcoder_cli(["-p", "Fix", "--output-format", "json"], project, fake_model, home)
    result = json_result(proc)
    assert proc.returncode == 1 and "same unusable tool call 3 times" in result["reason"]
    assert len(fake_model.requests) == 3


def test_runaway_reply_is_cut_off(project, fake_model, home):
    digits = "\n".join(str(n * 100) for n in range(1, 2000))
    fake_model.plan = [{"content": '{"name": "test", "arguments": {"expected_output": "' + digits},
                       {"content": "Stopping."}]
    proc = qcoder_cli(["-p", "Fix", "--output-format", "json"], project, fake_model, home)
    assert proc.returncode == 0, proc.stderr
    history = fake_model.requests[1]["messages"]
    assert history[-2]["role"] == "assistant" and len(history[-2]["content"]) < 400
    assert history[-1]["role"] == "user" and "ran away" in history[-1]["content"]


def test_a_loop_inside_a_json_string_is_cut_off_and_counted_invalid(project, fake_model, home):
    # The 0.5B's runaway edits: a block of escaped lines repeated in `new_string` until the token limit.
    block = "if stock < 3: raise OutOfStock\\nstock -= 1\\nreturn stock\\n"
    start = '{"name": "edit", "arguments": {"path": "textstats.py", "old_string": "x", "new_string": "'
    fake_model.plan = [{"content": start + block * 60}, {"content": "Stopping."}]
    proc = qcoder_cli(["-p", "Fix", "--output-format", "json"], project, fake_model, home)
    assert proc.returncode == 0, proc.stderr
    history = fake_model.requests[1]["messages"]
    assert history[-1]["role"] == "user" and "ran away" in history[-1]["content"]
    result = json_result(proc)
    assert result["call_checks"]["invalid"] == 1
    assert result["tokens"]["completion_tokens"] < 400  # cut after a few copies, not the 60 sent


def test_repeats_itself_needs_three_copies_of_a_long_enough_block():
    from qcoder.agent.loop import repeats_itself

    block = "    total += item.price * item.quantity\\n"
    assert repeats_itself("def f():\\n" + block * 6)
    assert not repeats_itself("def f():\\n" + block * 2)  # an old_string copied into new_string is normal
    assert not repeats_itself("x = '" + "=" * 79 + "'\n" + "print(x)\n" * 2)  # short repeats stay
    code = "".join(f"    assert add({n}, {n}) == {2 * n}\n" for n in range(40))
    assert not repeats_itself(code)  # similar lines are not the same line


def test_repeating_lines_are_cut_off_and_the_first_call_kept(project, fake_model, home):
    line = '{"name": "read_file", "arguments": {"path": "textstats.py"}}\n'
    fake_model.plan = [{"content": line * 50}, {"content": "Read it."}]
    proc = qcoder_cli(["-p", "Read", "--output-format", "json"], project, fake_model, home)
    assert proc.returncode == 0, proc.stderr
    history = fake_model.requests[1]["messages"]
    assert history[-2]["tool_calls"][0]["function"]["name"] == "read_file"
    assert history[-1]["role"] == "tool" and "def longest_word" in history[-1]["content"]
    # Cut after the third identical line: only those count, not the 50 lines the model would have sent.
    assert json_result(proc)["tokens"]["completion_tokens"] < 100


def test_the_time_limit_stops_a_reply_that_is_still_streaming(project, fake_model, home):
    plan = " ".join(f"Step {n}: read line {n * 7} of the module." for n in range(40))  # not a runaway repeat
    slow = {"content": plan, "chunk_delay": 0.04}  # about 8 s of streaming
    fake_model.plan = [slow]
    proc = qcoder_cli(["-p", "Fix", "--timeout", "1", "--output-format", "json"], project, fake_model, home)
    result = json_result(proc)
    assert proc.returncode == 3 and "time limit" in result["reason"]
    assert result["elapsed_s"] < 5  # stopped at the limit, not at the reply's end
    assert len(fake_model.requests) == 1
