"""A change under review: the unified diff (from git or a file), parsed into files and their added lines,
plus the text of each changed file in its new version."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from qcoder.ci.git import git, resolve_rev, show
from qcoder.errors import QcoderError

HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


@dataclass
class FileChange:
    path: str  # in the new version
    added: set[int] = field(default_factory=set)  # new-version line numbers added or modified
    hunks: list[str] = field(default_factory=list)  # the raw hunks, for the prompt
    removed: dict[int, list[str]] = field(default_factory=dict)  # old lines, by the new line they stood before
    new_text: str | None = None  # None when the file was deleted or cannot be read

    @property
    def lines(self) -> list[str]:
        return (self.new_text or "").splitlines()


@dataclass
class Change:
    files: list[FileChange]
    description: str  # what was diffed, for the report

    def file(self, path: str) -> FileChange | None:
        return next((f for f in self.files if f.path == path), None)


def parse_unified(text: str) -> list[FileChange]:
    """The files of a unified diff. Inside a hunk its header's line counts decide what is content, so an added
    line that reads "++ x" or a removed one that reads "-- x" is not taken for a file header."""
    files: list[FileChange] = []
    current: FileChange | None = None
    new_line = old_left = new_left = 0
    for line in text.splitlines():
        if current is not None and (old_left > 0 or new_left > 0):
            current.hunks[-1] += "\n" + line
            if line.startswith("+"):
                current.added.add(new_line)
                new_line, new_left = new_line + 1, new_left - 1
            elif line.startswith("-"):
                current.removed.setdefault(new_line, []).append(line[1:])
                old_left -= 1
            elif line.startswith(" ") or line == "":
                new_line, old_left, new_left = new_line + 1, old_left - 1, new_left - 1
            continue  # "\ No newline at end of file" counts for neither side
        if line.startswith("+++ "):
            target = line[4:].split("\t")[0].strip()
            current = None
            if target != "/dev/null":
                current = FileChange(target[2:] if target.startswith("b/") else target)
                files.append(current)
            continue
        match = HUNK.match(line)
        if current is not None and match:
            new_line = int(match.group(3))
            old_left = int(match.group(2) or 1)
            new_left = int(match.group(4) or 1)
            current.hunks.append(line)
    return files


def load_change(repo: Path, rng: str | None = None, staged: bool = False, diff_file: str | None = None) -> Change:
    """The diff to review and the new version of each file: a git range `A..B` (B's files), a single revision
    (against the working tree), the staged changes (the index), a diff file (the working tree), or, by default,
    the working tree against HEAD."""
    options = ["--no-color", "--no-ext-diff", "--unified=3", "--diff-filter=AMR"]
    new_rev: str | None = None  # None: read files from the working tree; "": from the index
    if diff_file:
        try:
            text = Path(diff_file).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise QcoderError(f"cannot read diff file {diff_file}: {exc.strerror}") from exc
        description = f"diff file {diff_file}"
    elif staged:
        text, new_rev, description = git(repo, "diff", "--cached", *options), "", "staged changes"
    elif rng:
        if ".." in rng:
            left, right = rng.split("...", 1) if "..." in rng else rng.split("..", 1)
            resolve_rev(repo, left or "HEAD")
            new_rev = resolve_rev(repo, right or "HEAD")
        else:
            resolve_rev(repo, rng)
        text, description = git(repo, "diff", *options, rng), f"range {rng}"
    else:
        text, description = git(repo, "diff", *options, "HEAD"), "working tree against HEAD"
    files = parse_unified(text)
    if diff_file and text.strip() and not files:
        raise QcoderError(f"{diff_file} is not a unified diff")
    for change in files:
        if new_rev is None:
            target = repo / change.path
            change.new_text = target.read_text(encoding="utf-8", errors="replace") if target.is_file() else None
        else:
            change.new_text = show(repo, new_rev, change.path)
    return Change(files, description)
