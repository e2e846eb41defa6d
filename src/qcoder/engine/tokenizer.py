"""Text <-> token ids for Qwen checkpoints, matching Hugging Face's tokenizer id for id.

Qwen uses byte-level BPE. We rebuild the same pipeline transformers' Qwen2Tokenizer builds (NFC normalizer,
the qwen2 split regex, byte-level pre-tokenizer and decoder) from whichever source the checkpoint ships:
`tokenizer.json`, `vocab.json` + `merges.txt`, or the metadata of a `.gguf` file. Added tokens (`<|im_end|>`,
`<tool_call>`, `<think>`, ...) are matched whole in text before BPE, as in HF.

`IncrementalDecoder` turns a stream of ids into text pieces for streaming output: it works on raw bytes
and only ever emits complete UTF-8 characters.
"""

from __future__ import annotations

import codecs
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import tokenizers
from tokenizers import AddedToken, Regex, decoders, normalizers, pre_tokenizers
from tokenizers import Tokenizer as _Backend
from tokenizers.models import BPE

from qcoder.errors import QcoderError
from qcoder.files import keep_newest, write_atomic

# The split regex transformers' Qwen2Tokenizer and llama.cpp's "qwen2" pre-tokenizer use: digits one by one,
# letters in runs, punctuation runs with their trailing newlines, whitespace kept apart from the next word.
QWEN2_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_TOKENIZER_CLASSES = {"Qwen2Tokenizer", "Qwen2TokenizerFast"}

# GGUF token types (llama.cpp's llama_token_type).
GGUF_CONTROL = 3
GGUF_USER_DEFINED = 4

# End-of-turn markers of every Qwen chat format; generation stops at any of them.
QWEN_STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")


@dataclass(frozen=True)
class _Added:
    """A token matched whole in the text; `special` ones are dropped by decode(skip_special_tokens=True)."""

    id: int
    content: str
    special: bool


def _byte_level_table() -> dict[str, int]:
    """The GPT-2 byte-level alphabet: printable bytes stand for themselves, the rest are shifted past 255."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {chr(b): b for b in printable}
    shifted = 0
    for b in range(256):
        if b not in printable:
            table[chr(256 + shifted)] = b
            shifted += 1
    return table


_BYTE_OF_CHAR = _byte_level_table()
# str.translate table taking each byte-level character to the character whose code point is its byte value.
_TO_LATIN1 = {ord(c): b for c, b in _BYTE_OF_CHAR.items()}


def build_qwen2_backend(vocab: dict[str, int], merges: list, added: list[_Added]) -> _Backend:
    """The byte-level BPE pipeline of transformers' Qwen2Tokenizer, from its vocabulary and merges."""
    pairs = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in merges]
    backend = _Backend(BPE(vocab=vocab, merges=pairs, unk_token=None, fuse_unk=False, byte_fallback=False))
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    # Added tokens go in id order so the backend assigns them the ids they already have in the vocabulary.
    for tok in sorted(added, key=lambda t: t.id):
        backend.add_tokens([AddedToken(tok.content, special=tok.special, normalized=False)])
        if backend.token_to_id(tok.content) != tok.id:
            raise QcoderError(f"tokenizer: added token {tok.content!r} should have id {tok.id}")
    return backend


# Rebuilding a GGUF file's tokenizer (151k strings and merges read and turned into a BPE) is most of a
# model's load time, so the built pipeline is kept per file (path, size, mtime): the backend as tokenizers
# saves it (read back by its own parser) and the token names beside it. A few files' worth.
_CACHE_FORMAT = 2
_CACHE_KEEP = 8


def _gguf_cache_file(path: Path) -> Path | None:
    """The cached backend's file; its fields sit beside it, in the same name ending .fields.json."""
    from qcoder.model.registry import cache_dir

    try:
        stat = path.stat()
    except OSError:
        return None
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{_CACHE_FORMAT}|{tokenizers.__version__}"
    return cache_dir() / "tokenizers" / (hashlib.sha256(key.encode()).hexdigest()[:24] + ".tokenizer.json")


def _fields_file(backend_file: Path) -> Path:
    return backend_file.with_name(backend_file.name.replace(".tokenizer.json", ".fields.json"))


def _read_cache(file: Path | None) -> tuple[_Backend, dict] | None:
    """(backend, fields), or None when there is no usable entry (absent, or damaged in any way: rebuilt)."""
    if file is None or not file.is_file():
        return None
    try:
        fields = json.loads(_fields_file(file).read_text(encoding="utf-8"))
        backend = _Backend.from_file(str(file))
    except Exception:  # noqa: BLE001 - the Rust parser raises plain Exceptions
        return None
    return (backend, fields) if isinstance(fields, dict) else None


def _write_cache(file: Path | None, backend: _Backend, fields: dict) -> None:
    """Never an error: a read-only cache only costs load time. The fields go last, so an entry is read only
    once both files are whole. Old entries are pruned."""
    if file is None:
        return
    try:
        write_atomic(file, backend.to_str())
        write_atomic(_fields_file(file), json.dumps(fields))
        keep_newest(file.parent, "*.tokenizer.json", _CACHE_KEEP, lambda entry: [_fields_file(entry)])
    except OSError:
        pass


class Tokenizer:
    """A checkpoint's tokenizer: encode/decode plus the special tokens and chat template that come with it."""

    def __init__(
        self,
        backend: _Backend,
        *,
        bos_token: str | None = None,
        eos_token: str | None = None,
        pad_token: str | None = None,
        chat_template: str | None = None,
        generation_config: dict | None = None,
    ):
        self._backend = backend
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.pad_token = pad_token
        self.chat_template = chat_template
        self.generation_config = generation_config or {}
        self.vocab_size = backend.get_vocab_size(with_added_tokens=True)
        self.eos_token_ids = self._collect_eos_ids()
        self._added_ids = set(backend.get_added_tokens_decoder())
        self._token_bytes: dict[int, bytes] = {}  # filled as ids are decoded: most of a vocabulary never is

    # ----- loading -----

    @classmethod
    def from_path(cls, path: str | Path) -> Tokenizer:
        """Load from a Hugging Face model directory or a .gguf file."""
        path = Path(path)
        if path.is_file() and path.suffix == ".gguf":
            return cls._from_gguf(path)
        if path.is_dir():
            return cls._from_hf_dir(path)
        raise QcoderError(f"no tokenizer at {path}: expected a model directory or a .gguf file")

    @classmethod
    def _from_hf_dir(cls, path: Path) -> Tokenizer:
        config = _read_json(path / "tokenizer_config.json")
        tokenizer_json = path / "tokenizer.json"
        tokenizer_class = config.get("tokenizer_class")
        if tokenizer_json.exists() and tokenizer_class and tokenizer_class not in QWEN2_TOKENIZER_CLASSES:
            # Not a Qwen tokenizer: its tokenizer.json is the whole pipeline, use it as saved.
            backend = _Backend.from_file(str(tokenizer_json))
        else:
            vocab, merges, added = _read_hf_vocab(path, tokenizer_json)
            added.update(_added_from_config(config))
            backend = build_qwen2_backend(vocab, merges, list(added.values()))
        return cls(
            backend,
            bos_token=_token_content(config.get("bos_token")),
            eos_token=_token_content(config.get("eos_token")),
            pad_token=_token_content(config.get("pad_token")),
            chat_template=_read_chat_template(path, config),
            generation_config=_read_json(path / "generation_config.json"),
        )

    @classmethod
    def _from_gguf(cls, path: Path) -> Tokenizer:
        cache = _gguf_cache_file(path)
        cached = _read_cache(cache)
        if cached is not None:
            try:
                return cls(cached[0], **cached[1])
            except Exception:  # noqa: BLE001 - fields that do not fit: the entry is rebuilt
                pass
        tokenizer, fields = cls._build_from_gguf(path)
        _write_cache(cache, tokenizer._backend, fields)
        return tokenizer

    @classmethod
    def _build_from_gguf(cls, path: Path) -> tuple[Tokenizer, dict]:
        from qcoder.model.gguf import open_checkpoint

        meta = open_checkpoint(path).tokenizer_metadata()
        if meta.get("pre") != "qwen2":
            raise QcoderError(f"{path}: unsupported GGUF tokenizer pre-tokenizer {meta.get('pre')!r} (need 'qwen2')")
        tokens = meta["tokens"]
        vocab = {tok: i for i, tok in enumerate(tokens)}
        added = [
            _Added(i, tokens[i], special=(kind == GGUF_CONTROL))
            for i, kind in enumerate(meta["token_types"])
            if kind in (GGUF_CONTROL, GGUF_USER_DEFINED)
        ]
        backend = build_qwen2_backend(vocab, meta["merges"], added)

        def name(key: str) -> str | None:
            token_id = meta.get(key)
            return tokens[token_id] if token_id is not None and 0 <= token_id < len(tokens) else None

        fields = {"bos_token": name("bos_token_id"), "eos_token": name("eos_token_id"),
                  "pad_token": name("padding_token_id"), "chat_template": meta.get("chat_template")}
        return cls(backend, **fields), fields

    # ----- the API -----

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, with added tokens in the text recognised; no BOS is prepended."""
        return self._backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return self._backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self._backend.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self._backend.id_to_token(token_id)

    @property
    def special_token_ids(self) -> set[int]:
        """Control tokens (<|im_end|>, ...): dropped by decode(skip_special_tokens=True). <tool_call>, <think> are text."""
        return {i for i, t in self._backend.get_added_tokens_decoder().items() if t.special}

    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes one token stands for (a byte-level token may hold part of a UTF-8 character).

        Ids past the vocabulary (the model's padding rows) stand for nothing, as in HF's decode."""
        raw = self._token_bytes.get(token_id)
        if raw is None:
            token = self._backend.id_to_token(token_id) if 0 <= token_id < self.vocab_size else None
            if token is None:
                raw = b""
            else:
                raw = token.encode() if token_id in self._added_ids else _token_to_bytes(token)
            self._token_bytes[token_id] = raw
        return raw

    # ----- derived tables -----

    def _collect_eos_ids(self) -> set[int]:
        names = [self.eos_token, *QWEN_STOP_TOKENS]
        ids = {self.token_to_id(n) for n in names if n is not None}
        configured = self.generation_config.get("eos_token_id")
        ids.update(configured if isinstance(configured, list) else [configured])
        ids.discard(None)
        return ids

    def all_token_bytes(self, count: int) -> list[bytes]:
        """token_bytes(i) for i in range(count), the whole vocabulary at once (structured output's token table)."""
        added = self._added_ids
        table = [b""] * max(count, self.vocab_size)
        plain: list[tuple[int, str]] = []
        for token, token_id in self._backend.get_vocab(with_added_tokens=True).items():
            if token_id in added:
                table[token_id] = token.encode()
            else:
                plain.append((token_id, token))
        try:  # every token byte-level (a character per byte): one translate for all of them, then slices
            joined = "".join(token for _, token in plain).translate(_TO_LATIN1).encode("latin-1")
        except UnicodeEncodeError:
            joined = None
        offset = 0
        for token_id, token in plain:
            if joined is not None:
                table[token_id] = joined[offset : offset + len(token)]
                offset += len(token)
            else:
                table[token_id] = _token_to_bytes(token)
        return table[:count]


def _token_to_bytes(token: str) -> bytes:
    try:
        return token.translate(_TO_LATIN1).encode("latin-1")
    except UnicodeEncodeError:  # not a byte-level token: keep unknown characters as UTF-8
        return b"".join(bytes([_BYTE_OF_CHAR[c]]) if c in _BYTE_OF_CHAR else c.encode() for c in token)


class IncrementalDecoder:
    """Streams text from ids one at a time; never emits half a UTF-8 character.

    Each token's bytes go through Python's incremental UTF-8 decoder, which holds back an incomplete trailing
    character until its remaining bytes arrive: O(1) work per token. Bytes that can never form a character come
    out as U+FFFD, as in a full decode.
    """

    def __init__(self, tokenizer: Tokenizer, skip_special_tokens: bool = False):
        self._tokenizer = tokenizer
        self._skip_special = skip_special_tokens
        self._special_ids = tokenizer.special_token_ids
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def add(self, token_id: int) -> str:
        """The new text this token completes (often '', e.g. mid-way through an emoji)."""
        if self._skip_special and token_id in self._special_ids:
            return ""
        return self._utf8.decode(self._tokenizer.token_bytes(token_id))

    def flush(self) -> str:
        """Text still held back at the end of the stream (an incomplete character becomes U+FFFD)."""
        return self._utf8.decode(b"", final=True)


# ----- reading HF files -----


def _read_json(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise QcoderError(f"{path}: invalid JSON ({e})") from e


def _token_content(value) -> str | None:
    """tokenizer_config stores special tokens either as strings or as AddedToken dicts."""
    if isinstance(value, dict):
        return value.get("content")
    return value


def _read_hf_vocab(path: Path, tokenizer_json: Path) -> tuple[dict[str, int], list, dict[int, _Added]]:
    if tokenizer_json.exists():
        data = _read_json(tokenizer_json)
        model = data.get("model", {})
        if model.get("type") != "BPE":
            raise QcoderError(f"{tokenizer_json}: expected a BPE model, got {model.get('type')!r}")
        added = {t["id"]: _Added(t["id"], t["content"], bool(t.get("special"))) for t in data.get("added_tokens", [])}
        return model["vocab"], model["merges"], added
    vocab_file, merges_file = path / "vocab.json", path / "merges.txt"
    if not (vocab_file.exists() and merges_file.exists()):
        raise QcoderError(f"{path}: no tokenizer.json, nor vocab.json and merges.txt")
    lines = merges_file.read_text(encoding="utf-8").splitlines()
    merges = [line for line in lines if line and not line.startswith("#version")]
    return _read_json(vocab_file), merges, {}


def _added_from_config(config: dict) -> dict[int, _Added]:
    return {
        int(i): _Added(int(i), t["content"], bool(t.get("special")))
        for i, t in config.get("added_tokens_decoder", {}).items()
    }


def _read_chat_template(path: Path, config: dict) -> str | None:
    """chat_template.jinja wins over tokenizer_config.json, as in transformers."""
    jinja_file = path / "chat_template.jinja"
    if jinja_file.exists():
        return jinja_file.read_text(encoding="utf-8")
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in template}
        template = named.get("default") or next(iter(named.values()), None)
    return template
