"""Prompts. Small models are the default: short, concrete, one example call.

The example is a read: 0.5B models copy the example verbatim, and an example edit got applied as is.
"""

# The system turn is the same for every run and workspace (the engine keeps its K/V on disk: the next run loads it
# instead of computing it); what the workspace holds comes before the first task, in WORKSPACE.
SYSTEM = """You are qcoder, a coding agent working in the directory named in the first message.
Use the tools to look at files, change them and run commands. Work step by step:
1. Find and read the relevant files.
2. Make the smallest correct change with `edit` (old_string must be copied exactly from the file).
3. {verify}
Call exactly one tool per reply, with a tool name from the list. Example:
<tool_call>
{{"name": "read_file", "arguments": {{"path": "main.py"}}}}
</tool_call>
When the task is done, reply with a one-paragraph summary and no tool call."""

VERIFY_WITH_TEST = "Run the tests with the `test` tool and fix what fails."
VERIFY_WITHOUT_TEST = "Check your change, for example by running the code."

WORKSPACE = "# Workspace\n{workspace}"

FILES = "\n\n# Files in the workspace\n{files}"

TASK = "{context}\n\n# Task\n{task}"

MEMORY = "\n\n# Notes from {name}\n{text}"

TEST_FAILED = """The tests still fail (`{command}`):
{output}
Find the cause, fix it, and run the tests again."""

RUNAWAY = ("Your reply ran away into a long repetitive sequence and was cut off. "
           "Give each tool only the arguments it lists, keep them short, and make one call.")

REPEATED_CALL = ("\n\nNote: you made this exact call {count} times in a row and got the same result. "
                 "Do something different, or answer if you are done.")

SUMMARIZE = """Summarise this coding session for your own later use. Keep: what the task is, files read and changed
(with the key facts learned), commands run and their outcome, what remains to do. Be brief and concrete."""

SUMMARY = "Summary of the earlier part of this session (older turns were compressed):\n{summary}"

NOT_A_CALL = ("Error: that looks like a tool call but it could not be used: {why}. "
              "Reply with exactly one call of one of these tools: {tools}. Or, if you are done, reply in plain words.")
