"""Aider polyglot-style exercises: single-shot whole-file edits, tests hidden, one retry with the test output.

Layout: `<dir>/<lang>/exercises/practice/<name>/` with `.docs/instructions*.md` and `.meta/config.json`
whose `files` lists `solution` (the stubs the model rewrites), `test` and `example` (the reference,
never shown and never copied). The model sees the instructions and the stubs and answers with each
file's full new content; the tests run in the sandbox with the language's test command; on failure the
test output goes back for a second try. Reported: pass_rate_1, pass_rate_2 and well_formed (the share
of responses that gave every solution file), over the exercises that were scored; an exercise whose
request failed or whose sandbox could not start is an error, counted beside them and retried by --resume.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from qcoder.errors import QcoderError
from qcoder.eval import report, sandbox


@dataclass(frozen=True)
class Toolchain:
    fence: str  # the code-fence language tag
    command: tuple[str, ...]
    # (variable, default) naming a toolchain directory: passed to the tests and made reachable in the sandbox
    home_dirs: tuple[tuple[str, str], ...] = ()

    def available(self) -> bool:
        return shutil.which(self.command[0]) is not None

    def environment(self) -> tuple[dict[str, str], tuple[str, ...]]:
        homes = {var: os.environ.get(var) or os.path.expanduser(default) for var, default in self.home_dirs}
        path = os.pathsep.join([os.path.dirname(shutil.which(self.command[0])), os.environ.get("PATH", "")])
        return {"PATH": path, **homes}, tuple(homes.values())


# Languages whose test command runs offline; one is used when its program is on PATH. JavaScript (npm/jest)
# and Java (gradle) need packages from the network, and Go is not installed here: not supported yet.
TOOLCHAINS = {
    "python": Toolchain("python", (sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider")),
    "rust": Toolchain("rust", ("cargo", "test", "--offline", "--", "--include-ignored"),
                      home_dirs=(("RUSTUP_HOME", "~/.rustup"),)),
    # exercism's CMakeLists run the test binary after building it, so a failing test fails the build
    "cpp": Toolchain("cpp", ("sh", "-c", "cmake -S . -B build -DEXERCISM_RUN_ALL_TESTS=1 >/dev/null && "
                                         "cmake --build build")),
}
TEST_TIMEOUT_S = 120.0
FEEDBACK_CHARS = 4000
DOCS = ("introduction.md", "instructions.md", "instructions.append.md")


@dataclass
class Exercise:
    language: str
    name: str
    path: Path
    solution: list[str]
    test: list[str]
    example: list[str]

    @property
    def key(self) -> str:
        return f"{self.language}/{self.name}"

    def instructions(self) -> str:
        parts = [(self.path / ".docs" / doc).read_text() for doc in DOCS if (self.path / ".docs" / doc).is_file()]
        return "\n\n".join(p.strip() for p in parts)


def discover(root: Path, languages: list[str] | None = None, names: list[str] | None = None,
             limit: int | None = None) -> list[Exercise]:
    if not root.is_dir():
        raise QcoderError(f"polyglot directory not found: {root}")
    found_languages = sorted(p.name for p in root.iterdir() if (p / "exercises" / "practice").is_dir())
    if not found_languages:
        raise QcoderError(f"{root} has no <lang>/exercises/practice/ folders (the polyglot-benchmark layout)")
    wanted = languages or found_languages
    unusable = [lang for lang in wanted if lang not in TOOLCHAINS or not TOOLCHAINS[lang].available()]
    if languages and unusable:
        raise QcoderError(f"no usable toolchain for {', '.join(unusable)} (supported: {', '.join(TOOLCHAINS)})")
    exercises = []
    for lang in (lang for lang in wanted if lang not in unusable):
        for path in sorted((root / lang / "exercises" / "practice").iterdir()):
            if (path / ".meta" / "config.json").is_file() and (not names or path.name in names):
                files = json.loads((path / ".meta" / "config.json").read_text()).get("files", {})
                exercises.append(Exercise(lang, path.name, path, files.get("solution", []), files.get("test", []),
                                          files.get("example", [])))
    if not exercises:
        raise QcoderError(f"no exercises selected under {root} (languages with a toolchain: "
                          f"{', '.join(lang for lang in found_languages if lang not in unusable) or 'none'})")
    return exercises[:limit] if limit is not None else exercises


def first_prompt(ex: Exercise, files: dict[str, str]) -> str:
    fence = TOOLCHAINS[ex.language].fence
    shown = "\n\n".join(f"{name}\n```{fence}\n{content}```" for name, content in files.items())
    names = ", ".join(files)
    return (f"{ex.instructions()}\n\n{shown}\n\nUse the above instructions to modify the supplied files: {names}\n"
            "Don't change the names of existing functions or classes, as they may be referenced from other code "
            "like unit tests, etc.\nOnly use standard libraries, don't suggest installing any packages.\n"
            "Reply with the complete new content of every file: the file name alone on a line, then the whole "
            "file in a fenced code block.")


def retry_prompt(test_output: str, names: list[str]) -> str:
    return (f"The tests failed:\n```\n{test_output[-FEEDBACK_CHARS:]}\n```\nFix the code in {', '.join(names)} "
            "so that the tests pass. Reply with the complete new content of every file, in the same format.")


FENCED = re.compile(r"^```[^\n]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


def parse_files(response: str, names: list[str]) -> dict[str, str] | None:
    """The new content of each solution file, or None when the response does not give them all."""
    blocks = [(response[:m.start()].rstrip().rsplit("\n", 1)[-1], m.group(1)) for m in FENCED.finditer(response)]
    files = {}
    for name in names:
        labelled = [body for label, body in blocks if Path(name).name in label.strip(" `*#:")]
        if labelled:
            files[name] = labelled[-1]
    if len(names) == 1 and not files and blocks:
        files[names[0]] = blocks[-1][1]  # one file: an unlabelled block can only be that file
    return files if len(files) == len(names) else None


def run_tests(ex: Exercise, files: dict[str, str], isolate: bool = True) -> sandbox.SandboxResult:
    workdir_files = {}
    for path in ex.path.rglob("*"):
        rel = path.relative_to(ex.path)
        if path.is_file() and rel.parts[0] not in (".meta", ".docs") and str(rel) not in ex.example:
            workdir_files[str(rel)] = path.read_bytes()
    workdir_files.update(files)
    toolchain = TOOLCHAINS[ex.language]
    env, reveal = toolchain.environment()
    limits = sandbox.Limits(timeout_s=TEST_TIMEOUT_S, isolate=isolate)
    return sandbox.run(list(toolchain.command), files=workdir_files, limits=limits, env=env, reveal=reveal)


def attempt(ex: Exercise, client, sampling: dict, isolate: bool = True) -> dict:
    current = {name: (ex.path / name).read_text() for name in ex.solution}
    messages = [{"role": "user", "content": first_prompt(ex, current)}]
    row = {"language": ex.language, "exercise": ex.name, "responses": 0, "well_formed": 0, "tokens": 0,
           "passed_1": False, "passed_2": False, "status": "", "test_output": "", "error": ""}
    start = time.monotonic()
    for try_number in (1, 2):
        try:
            resp = client.chat(messages, **sampling)
        except Exception as exc:  # noqa: BLE001 - a failed request makes this exercise an error, not the run
            row["error"] = f"request failed: {type(exc).__name__}: {exc}"
            row["status"] = "error"
            break
        row["responses"] += 1
        row["tokens"] += (resp.usage or {}).get("completion_tokens", 0)
        edited = parse_files(resp.content or "", ex.solution)
        if edited is not None:
            row["well_formed"] += 1
            current = edited
        result = run_tests(ex, current, isolate)
        row["test_output"] = (result.stdout + result.stderr)[-FEEDBACK_CHARS:]
        row["status"] = result.status
        if result.status == "sandbox_error":
            row["error"] = f"sandbox: {result.reason}"
            break
        if result.status == "pass":
            row["passed_1"] = try_number == 1
            row["passed_2"] = True
            break
        messages += [{"role": "assistant", "content": resp.content or ""},
                     {"role": "user", "content": retry_prompt(row["test_output"], ex.solution)}]
    row["seconds"] = round(time.monotonic() - start, 2)
    return row


def summarize(rows: list[dict], settings: dict) -> dict:
    def rates(subset: list[dict]) -> dict:
        scored = [r for r in subset if not report.is_error(r)]
        total, responses = len(scored), sum(r["responses"] for r in scored)
        return {"exercises": total, "errors": len(subset) - total,
                "pass_rate_1": sum(r["passed_1"] for r in scored) / total if total else None,
                "pass_rate_2": sum(r["passed_2"] for r in scored) / total if total else None,
                "well_formed": sum(r["well_formed"] for r in scored) / responses if responses else None}

    languages = sorted({r["language"] for r in rows})
    tokens = sum(r["tokens"] for r in rows)
    return {"benchmark": "polyglot", "settings": settings, **rates(rows),
            "languages": {lang: rates([r for r in rows if r["language"] == lang]) for lang in languages},
            "completion_tokens": tokens, "problems": report.run_problems(rows, tokens)}


ROW_KEY = ("language", "exercise")  # an exercise's rows in polyglot.jsonl


def run(exercises: list[Exercise], client, output: Path, *, sampling: dict, workers: int = 4,
        resume: bool = False, progress: bool = True, isolate: bool = True) -> dict:
    path = report.open_rows_file(output, "polyglot.jsonl", resume)
    done = {"/".join(key) for key, r in report.read_rows(path, ROW_KEY).items() if not report.is_error(r)}
    todo = [ex for ex in exercises if ex.key not in done]
    lock = threading.Lock()

    def one(ex: Exercise) -> None:
        row = attempt(ex, client, sampling, isolate)
        with lock, path.open("a") as f:
            f.write(json.dumps(row) + "\n")
            if progress:
                print(f"{ex.key}: {_outcome(row)}", file=sys.stderr)

    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="polyglot") as pool:
        list(pool.map(one, todo))
    keys = {ex.key for ex in exercises}
    rows = [row for key, row in report.read_rows(path, ROW_KEY).items() if "/".join(key) in keys]
    summary = summarize(rows, {"model": getattr(client, "model", None), **sampling})
    summary["sandbox"] = asdict(sandbox.probe(sandbox.Limits(timeout_s=30, isolate=isolate)))
    (output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    report.plot_polyglot(summary, output / "polyglot.png")
    _print(summary)
    return summary


def _outcome(row: dict) -> str:
    if report.is_error(row):
        return f"error ({row['error'][:120]})"
    return "pass" if row["passed_1"] else "pass (2nd try)" if row["passed_2"] else "fail"


def _print(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"polyglot: {summary['exercises']} exercises")
    for column in ("language", "exercises", "pass_rate_1", "pass_rate_2", "well_formed", "errors"):
        table.add_column(column, justify="left" if column == "language" else "right")
    for lang, r in [*summary["languages"].items(), ("all", summary)]:
        cells = [f"{r[c]:.1%}" if r[c] is not None else "-" for c in ("pass_rate_1", "pass_rate_2", "well_formed")]
        table.add_row(lang, str(r["exercises"]), *cells, report.errors_cell(r["errors"]))
    console = Console()
    console.print(table)
    report.print_sandbox_and_problems(console, summary)
