"""`qcoder ci regress` on a repository with 3 seeded regressions in a 10-commit range: is each broken test
found and attributed to the commit that broke it? Not run in CI.

    python benchmarks/ci_regress_seeded.py [--bisect-over 4] [--model NAME | --base-url URL | --no-explain]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LIB = {
    "add": "def add(a, b):\n    return a + b\n",
    "neg": "def neg(a):\n    return -a\n",
    "half": "def half(a):\n    return a / 2\n",
    "square": "def square(a):\n    return a * a\n",
}
TESTS = "".join(f"from lib_{n} import {n}\n" for n in LIB) + (
    "\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\ndef test_neg():\n    assert neg(4) == -4\n\n\n"
    "def test_half():\n    assert half(5) == 2.5\n\n\ndef test_square():\n    assert square(3) == 9\n")
# 10 commits after the base; three of them break something (the bad ones), the rest are harmless.
COMMITS = [
    ("docs: readme", "README.md", "lib\n", None),
    ("add: plus carry", "lib_add.py", "def add(a, b):\n    return a + b + 1\n", "test_add"),
    ("docs: usage", "README.md", "lib, usage\n", None),
    ("square: same thing, spelled out", "lib_square.py", "def square(a):\n    return a ** 2\n", None),
    ("neg: abs first", "lib_neg.py", "def neg(a):\n    return -abs(a) if a > 0 else a\n", None),
    ("notes", "NOTES.md", "notes\n", None),
    ("half: integer division", "lib_half.py", "def half(a):\n    return a // 2\n", "test_half"),
    ("docs: more", "README.md", "lib, usage, more\n", None),
    ("square: off by one", "lib_square.py", "def square(a):\n    return a ** 2 + 1\n", "test_square"),
    ("notes: more", "NOTES.md", "notes, more\n", None),
]


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), "-c", "user.name=b", "-c", "user.email=b@b.invalid", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bisect-over", type=int, default=4)
    parser.add_argument("--model")
    parser.add_argument("--base-url")
    parser.add_argument("--no-explain", action="store_true")
    args = parser.parse_args()
    from qcoder.ci.regress import regress
    from qcoder.client import make_client

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, body in LIB.items():
            (root / f"lib_{name}.py").write_text(body)
        (root / "test_lib.py").write_text(TESTS)
        git(root, "init", "-q")
        git(root, "add", "-A")
        git(root, "commit", "-qm", "base")
        base = git(root, "rev-parse", "HEAD")
        expected = {}
        for subject, path, text, breaks in COMMITS:
            (root / path).write_text(text)
            git(root, "add", "-A")
            git(root, "commit", "-qm", subject)
            if breaks:
                expected[f"test_lib.py::{breaks}"] = git(root, "rev-parse", "HEAD")
        client = None if args.no_explain else make_client(args.model, args.base_url)
        start = time.time()
        report = regress(root, base, "HEAD", f"{sys.executable} -m pytest -q", client=client,
                         bisect_over=args.bisect_over)
        found = {b.test: b for b in report.broken}
        right = 0
        for test, commit in expected.items():
            b = found.get(test)
            ok = b is not None and b.culprit and b.culprit["commit"] == commit
            right += bool(ok)
            culprit = b.culprit["subject"] if b and b.culprit else "-"
            print(f"{test:24} {'found' if b else 'MISSED'}  attributed to {culprit!r}  {'right' if ok else 'WRONG'}")
            if b and b.explanation:
                print(f"    why: {b.explanation}")
        extra = sorted(set(found) - set(expected))
        print(f"{right}/{len(expected)} regressions found and attributed to the right commit; "
              f"{len(extra)} false alarms; {report.commits} commits; {time.time() - start:.0f}s")


if __name__ == "__main__":
    main()
