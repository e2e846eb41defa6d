"""CLI: `qcoder review`, `qcoder gen-tests`, `qcoder ci regress`. Heavy imports happen in the handlers.

Exit status: 0 clean, 1 when the gate trips (findings at --fail-on, a regression), 2 on an error.
"""

from __future__ import annotations

from pathlib import Path

from qcoder.errors import QcoderError

FORMATS = ("text", "json", "sarif", "markdown")


def _client_options(p) -> None:
    p.add_argument("--model", help="model name or path (built-in engine), or the model name sent to --base-url")
    p.add_argument("--base-url", help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL; none: built-in engine)")
    p.add_argument("--api-key", help="API key for --base-url (default: $OPENAI_API_KEY)")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "review", help="review a change; only findings checked against the code are reported",
        description="Review a git range (A..B, or REV against the working tree), the staged changes, a diff file, "
        "or by default the working tree against HEAD. Findings on lines that do not exist or whose quoted code "
        "does not match are dropped; bandit's findings on changed lines are merged in when bandit is installed.")
    p.add_argument("range", nargs="?", metavar="RANGE", help="git range A..B, or one revision (default: HEAD)")
    p.add_argument("--staged", action="store_true", help="review the staged changes")
    p.add_argument("--diff", metavar="FILE", help="review a unified diff file (new versions read from the working tree)")
    p.add_argument("--format", choices=FORMATS, default="text", help="output format (default text)")
    p.add_argument("--output", "-o", help="write the report to FILE instead of stdout")
    p.add_argument("--fail-on", choices=("error", "warning"), help="exit 1 when a finding is at least this severe")
    p.add_argument("--test-cmd", help="command that runs one test given its id (e.g. 'python -m pytest -q'): "
                   "findings that claim a test fails are checked by running it")
    p.add_argument("--no-bandit", action="store_true", help="do not run bandit")
    p.add_argument("--samples", type=int, default=1,
                   help="sampled reviews per changed function (default 1: one greedy review)")
    p.add_argument("--agree", type=int, help="how many of the samples must flag a line to report it "
                   "(default: a majority)")
    _client_options(p)
    p.set_defaults(func=run_review)

    g = subparsers.add_parser(
        "gen-tests", help="synthesize pytest tests that pass, are deterministic and add coverage or kill mutants",
        description="Ask the model for several candidate tests in one request, run them in the sandbox three "
        "times, and keep only those that add coverage of the target or kill mutants of it.")
    g.add_argument("path", metavar="PATH", help="the Python module to test")
    g.add_argument("--function", help="focus on this function")
    g.add_argument("--out", help="new test file to write (default tests/test_<module>_generated.py; never overwritten)")
    g.add_argument("--baseline", nargs="*", default=[], metavar="TEST_FILE",
                   help="existing test files of the target: the 'before' numbers, and what new tests must add to")
    g.add_argument("--n", type=int, default=8, help="candidate tests to ask for (default 8)")
    g.add_argument("--max-mutants", type=int, default=30, help="mutants to run (default 30)")
    g.add_argument("--json", action="store_true", help="print the report as JSON")
    _client_options(g)
    g.set_defaults(func=run_gen_tests)

    c = subparsers.add_parser("ci", help="CI checks: `qcoder ci regress`")
    sub = c.add_subparsers(dest="ci_command", metavar="CHECK")
    r = sub.add_parser(
        "regress", help="tests that broke between two revisions, and the commits that broke them",
        description="Run the test command at BASE and HEAD in clean worktrees, list the tests that broke, the "
        "commits that touched the code each covers, and the first bad commit (git bisect run on long ranges).")
    r.add_argument("base", nargs="?", default="HEAD~1", metavar="BASE", help="default HEAD~1")
    r.add_argument("head", nargs="?", default="HEAD", metavar="HEAD", help="default HEAD")
    r.add_argument("--test-cmd", default="python -m pytest -q", help="default 'python -m pytest -q'")
    r.add_argument("--timeout", type=float, default=900, help="seconds per test-command run (default 900)")
    r.add_argument("--bisect-over", type=int, default=4, help="git bisect when the range has more commits (default 4)")
    r.add_argument("--no-explain", action="store_true", help="no model: skip the explanations")
    r.add_argument("--json", action="store_true", help="print the report as JSON")
    _client_options(r)
    r.set_defaults(func=run_regress)
    c.set_defaults(func=lambda args: (c.print_help(), 2)[1])


def _client(args):
    from qcoder.client import make_client

    return make_client(args.model, args.base_url, args.api_key)


class _LazyClient:
    """Makes the client on first use: `ci regress` needs a model only when something broke."""

    def __init__(self, args):
        self._args, self._client = args, None

    def chat(self, *args, **kwargs):
        self._client = self._client or _client(self._args)
        return self._client.chat(*args, **kwargs)


def _write(text: str, output: str | None) -> None:
    if not output:
        print(text)
        return
    from qcoder.files import write_atomic

    write_atomic(Path(output), text + "\n")


def run_review(args) -> int:
    from qcoder.ci import report, review, sarif
    from qcoder.ci.diff import load_change
    from qcoder.ci.findings import at_or_above
    from qcoder.ci.git import repo_root

    if sum(map(bool, (args.range, args.staged, args.diff))) > 1:
        raise QcoderError("give one of RANGE, --staged or --diff")
    agree = args.agree or args.samples // 2 + 1
    if args.samples < 1 or not 1 <= agree <= args.samples:
        raise QcoderError("--samples must be at least 1, and --agree between 1 and --samples")
    repo = Path.cwd() if args.diff and not _in_git() else repo_root()
    change = load_change(repo, args.range, args.staged, args.diff)
    if not change.files:
        review.progress(f"nothing to review ({change.description})")
    result = review.review(_client(args), repo, change, test_cmd=args.test_cmd, use_bandit=not args.no_bandit,
                           samples=args.samples, agree=agree) if change.files else review.ReviewResult(change)
    render = {"text": report.to_text, "markdown": report.to_markdown, "json": review.to_json,
              "sarif": lambda r: sarif.dumps(r.findings)}[args.format]
    _write(render(result), args.output)
    return 1 if args.fail_on and at_or_above(result.findings, args.fail_on) else 0


def _in_git() -> bool:
    import subprocess

    return subprocess.run(["git", "rev-parse"], capture_output=True).returncode == 0


def run_gen_tests(args) -> int:
    from qcoder.ci import gen_tests
    from qcoder.files import write_atomic

    if args.n < 1:
        raise QcoderError("--n must be at least 1")
    target = gen_tests.find_target(args.path)
    out = Path(args.out or f"tests/test_{target.module.rsplit('.', 1)[-1]}_generated.py")
    if out.exists():
        raise QcoderError(f"{out} exists; gen-tests writes a new file, never over an existing one (use --out)")
    baseline = {}
    for name in args.baseline:
        try:
            baseline[Path(name).name] = Path(name).read_text(encoding="utf-8")
        except OSError as exc:
            raise QcoderError(f"cannot read baseline test file {name}: {exc.strerror}") from exc
    report, text = gen_tests.generate(_client(args), target, function=args.function, n=args.n, baseline=baseline,
                                      max_mutants=args.max_mutants)
    if text:
        write_atomic(out, text)
        report.out = str(out)
    if args.json:
        import json

        print(json.dumps(report.to_dict(), indent=2))
    else:
        for c in report.candidates:
            print(f"  {c.status:>16}  {c.name}  {c.detail}")
        print(report.summary() + (f"; written to {out}" if text else "; nothing written"))
    return 0


def run_regress(args) -> int:
    from qcoder.ci import regress
    from qcoder.ci.git import repo_root

    if getattr(args, "ci_command", None) is None:
        raise QcoderError("missing check: qcoder ci regress")
    client = None if args.no_explain else _LazyClient(args)
    report = regress.regress(repo_root(), args.base, args.head, args.test_cmd, client=client, timeout=args.timeout,
                             bisect_over=args.bisect_over)
    print(report.to_json() if args.json else regress.to_text(report))
    return 1 if report.broken else 0


