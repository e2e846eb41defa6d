"""Execution-based evaluation: `qcoder eval BENCH`.

Read in this order: commands.py (the CLI) -> runner.py (one run: generate, sanitize, check, record)
-> generation.py + prompts.py (evalplus instruct protocol) -> sanitize.py -> checks.py / plus_tests.py
(+ plus_child.py, which runs inside the sandbox) -> sandbox.py (+ sandbox_launcher.py, guard.py)
-> passk.py, report.py. polyglot.py is the Aider-style multi-language exercise runner; datasets.py
finds and reads the benchmark files.
"""
