"""`qcoder gen-tests` on real modules: small pure-Python libraries fetched with `pip download --no-deps`.

Each library's wheel is unpacked into a temporary directory (its code is never committed here), then
`qcoder gen-tests` runs on one module of it as a subprocess, and the script prints one row per module: tests
kept / generated, coverage before -> after, mutation score before -> after, and the time taken. There is no
baseline test file, so "before" is 0% by construction; the mutants are those on lines the kept candidates run.
Not run in CI.

    python benchmarks/ci_gen_tests_modules.py --model qwen2.5-coder-1.5b-instruct [--only roman,toposort]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

# (pip requirement, module file inside the wheel, --function or None): single-module libraries without deps.
MODULES = [
    ("roman==5.2", "roman/__init__.py", None),
    ("toposort==1.10", "toposort.py", None),
    ("hashids==1.3.1", "hashids.py", None),
    ("inflection==0.5.1", "inflection.py", "underscore"),
    ("humanize==4.17.0", "humanize/filesize.py", "naturalsize"),
    ("isodate==0.7.2", "isodate/isoduration.py", "parse_duration"),
]


def unpack(requirement: str, into: Path) -> None:
    """The wheel of `requirement`, unpacked into `into` (its Python files only)."""
    wheels = into / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d",
                    str(wheels), requirement], check=True)
    name = requirement.split("==")[0].replace("-", "_")
    wheel = next(w for w in wheels.glob("*.whl") if w.name.lower().startswith(name.lower()))
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            if member.endswith(".py") and ".dist-info/" not in member:
                archive.extract(member, into / "src")


def gen_tests(path: Path, function: str | None, args, workdir: Path) -> dict:
    command = [sys.executable, "-m", "qcoder", "gen-tests", str(path), "--json", "--n", str(args.n),
               "--max-mutants", str(args.max_mutants), "--out", str(workdir / "test_generated.py")]
    command += ["--function", function] if function else []
    command += ["--model", args.model] + (["--base-url", args.base_url] if args.base_url else [])
    proc = subprocess.run(command, cwd=workdir, stdout=subprocess.PIPE, text=True)  # progress shows on stderr
    if proc.returncode != 0:
        return {"error": f"exit status {proc.returncode}"}
    return json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    parser.add_argument("--base-url")
    parser.add_argument("--n", type=int, default=8, help="candidate tests per module")
    parser.add_argument("--max-mutants", type=int, default=30)
    parser.add_argument("--only", help="comma-separated library names")
    parser.add_argument("--show-tests", action="store_true", help="print each candidate's status")
    args = parser.parse_args()
    wanted = set(args.only.split(",")) if args.only else None
    header = f"{'module':34} {'kept/gen':>8} {'coverage':>13} {'mutation score':>15} {'mutants':>7} {'time':>6}"
    rows = []
    for requirement, member, function in MODULES:
        if wanted and requirement.split("==")[0] not in wanted:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            unpack(requirement, workdir)
            start = time.time()
            report = gen_tests(workdir / "src" / member, function, args, workdir)
        label = member + (f"::{function}" if function else "")
        if "error" in report:
            row = f"{label:34} error: {report['error']}"
        else:
            (cb, ca), (sb, sa) = report["coverage"], report["mutation_score"]
            row = (f"{label:34} {report['kept']:>3}/{report['generated']:<4} {cb:>5.0%} -> {ca:<4.0%} "
                   f"{sb:>6.0%} -> {sa:<5.0%} {report['mutants']:>7} {time.time() - start:>5.0f}s")
            if args.show_tests:
                for c in report["candidates"]:
                    print(f"    {c['status']:>16}  {c['name']}  {c['detail'][:120]}", flush=True)
        print(row, flush=True)
        rows.append(row)
    print("\n" + header)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
