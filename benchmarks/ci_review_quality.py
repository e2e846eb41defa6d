"""How well `qcoder review` flags seeded bugs: each case is a small function and one changed line that breaks it.

Prints, per case, whether a finding lands on the bug line and how many findings land elsewhere (false
findings), then the totals; and, on a few correct changes (refactors), whether the review stays quiet.
Uses the built-in engine (--model) or an endpoint (--base-url). Not run in CI.

    python benchmarks/ci_review_quality.py --model qwen2.5-coder-1.5b-instruct [--limit 4] [--samples 5]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# (name, original source, (old line, new line)): the new line is the seeded bug.
CASES = [
    ("mean", "def mean(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total / len(xs)\n",
     ("    for x in xs:", "    for x in xs[1:]:")),
    ("clamp", "def clamp(x, lo, hi):\n    if x < lo:\n        return lo\n    if x > hi:\n        return hi\n    return x\n",
     ("    if x > hi:", "    if x < hi:")),
    ("last", "def last(items):\n    if not items:\n        return None\n    return items[len(items) - 1]\n",
     ("    return items[len(items) - 1]", "    return items[len(items)]")),
    ("is_even", "def is_even(n):\n    return n % 2 == 0\n", ("    return n % 2 == 0", "    return n % 2 == 1")),
    ("count_vowels", "def count_vowels(s):\n    return sum(1 for c in s.lower() if c in 'aeiou')\n",
     ("    return sum(1 for c in s.lower() if c in 'aeiou')", "    return sum(1 for c in s if c in 'aeiou')")),
    ("fact", "def fact(n):\n    result = 1\n    for i in range(2, n + 1):\n        result *= i\n    return result\n",
     ("    for i in range(2, n + 1):", "    for i in range(2, n):")),
    ("merge", "def merge(a, b):\n    out = dict(a)\n    out.update(b)\n    return out\n",
     ("    out = dict(a)", "    out = a")),
    ("read_config", "import json\n\n\ndef read_config(path):\n    with open(path) as fh:\n        return json.load(fh)\n",
     ("    with open(path) as fh:", "    with open(path, 'w') as fh:")),
    ("safe_div", "def safe_div(a, b):\n    if b == 0:\n        return 0.0\n    return a / b\n",
     ("    if b == 0:", "    if b != 0:")),
    ("run", "import subprocess\n\n\ndef run(name):\n    return subprocess.run(['ls', name], check=True)\n",
     ("    return subprocess.run(['ls', name], check=True)", "    return subprocess.run('ls ' + name, shell=True)")),
    ("percent", "def percent(part, whole):\n    return 100 * part / whole\n",
     ("    return 100 * part / whole", "    return 100 * part // whole")),
    ("dedupe", "def dedupe(items):\n    seen = set()\n    out = []\n    for x in items:\n        if x not in seen:\n"
     "            seen.add(x)\n            out.append(x)\n    return out\n",
     ("        if x not in seen:", "        if x in seen:")),
]


# Correct changes (a refactor that keeps the behaviour): any finding on them is a false alarm.
CORRECT = [
    ("total", "def total(xs):\n    t = 0\n    for x in xs:\n        t += x\n    return t\n",
     ("    t = 0\n    for x in xs:\n        t += x\n    return t", "    return sum(xs)")),
    ("square", "def square(a):\n    return a * a\n", ("    return a * a", "    return a ** 2")),
    ("greet", "def greet(name):\n    return 'Hello, ' + name + '!'\n",
     ("    return 'Hello, ' + name + '!'", "    return f'Hello, {name}!'")),
    ("is_empty", "def is_empty(items):\n    return len(items) == 0\n",
     ("    return len(items) == 0", "    return not items")),
]


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def review_case(client, args, name: str, source: str, old: str, new: str):
    """(the review result, seconds) for `source` changed from `old` to `new` in a fresh repository."""
    from qcoder.ci.diff import load_change
    from qcoder.ci.review import review

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / f"{name}.py").write_text(source)
        git(root, "init", "-q")
        git(root, "add", "-A")
        git(root, "-c", "user.name=b", "-c", "user.email=b@b.invalid", "commit", "-qm", "base")
        (root / f"{name}.py").write_text(source.replace(old, new))
        start = time.time()
        result = review(client, root, load_change(root), use_bandit=False, samples=args.samples,
                        agree=args.agree or args.samples // 2 + 1)
        return result, time.time() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    parser.add_argument("--base-url")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--only", help="comma-separated case names")
    parser.add_argument("--samples", type=int, default=1, help="sampled reviews per changed function")
    parser.add_argument("--agree", type=int, help="samples that must flag a line (default: a majority)")
    parser.add_argument("--parallel", type=int, default=4, help="cases reviewed at once (the engine batches them)")
    parser.add_argument("--verbose", action="store_true", help="print each finding and each dropped one")
    args = parser.parse_args()
    from qcoder.client import make_client

    client = make_client(args.model, args.base_url)
    cases = [(*c, True) for c in CASES] + [(*c, False) for c in CORRECT]
    cases = [c for c in cases if not args.only or c[0] in args.only.split(",")]
    cases = cases[: args.limit] if args.limit else cases
    hits = false = dropped = alarms = 0
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        results = pool.map(lambda c: review_case(client, args, c[0], c[1], *c[2]), cases)
        for (name, source, (old, _), is_bug), (result, seconds) in zip(cases, results, strict=True):
            bug_line = source.splitlines().index(old.splitlines()[0]) + 1 if is_bug else None
            on_bug = [f for f in result.findings if f.line == bug_line]
            others = [f for f in result.findings if f.line != bug_line]
            dropped += len(result.dropped)
            if is_bug:
                hits += bool(on_bug)
                false += len(others)
                verdict = f"bug line {bug_line}: {'FLAGGED' if on_bug else 'missed '}  false {len(others)}"
            else:
                alarms += bool(others)
                verdict = f"correct change: {'false alarm' if others else 'quiet'} ({len(others)} findings)"
            print(f"{name:14} {verdict}  dropped {len(result.dropped)}  {seconds:.0f}s", flush=True)
            if args.verbose:
                for f in result.findings:
                    print(f"    kept    {f.line}: {f.quote!r}  {f.message[:150]}  [{f.evidence[:150]}]")
                for d in result.dropped:
                    print(f"    dropped {d['reason']}: {str(d['finding'])[:200]}")
    bugs = sum(c[3] for c in cases)
    print(f"flagged {hits}/{bugs} bugs on the right line; {false / max(bugs, 1):.2f} false findings per bug diff; "
          f"{alarms}/{len(cases) - bugs} correct changes drew a finding; {dropped} unverified model findings dropped")


if __name__ == "__main__":
    main()
