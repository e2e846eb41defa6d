"""Execution-based evaluation: `qcoder eval BENCH`.

Read in this order: commands.py (the CLI) -> runner.py (one run: generate, sanitize, check, record)
-> generation.py + prompts.py (evalplus instruct protocol) -> sanitize.py -> checks.py / plus_tests.py
-> calls.py (+ call_driver.py and call_worker.py, which run inside the sandbox, and wire.py, how they
talk) -> sandbox.py (+ sandbox_launcher.py, guard.py) -> passk.py, report.py. docs/security.md says
which threat each piece stops. polyglot.py is the Aider-style multi-language exercise runner; datasets.py
finds and reads the benchmark files.
"""
