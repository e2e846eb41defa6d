"""Tokenizer parity with Hugging Face on the two shared Qwen tokenizers, and on one rebuilt from GGUF metadata."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from qcoder.engine.tokenizer import GGUF_CONTROL, GGUF_USER_DEFINED, IncrementalDecoder, Tokenizer
from qcoder.errors import QcoderError
from tests.conftest import SHARED_DATA

DATA = SHARED_DATA
QWEN25 = DATA / "qwen2.5-coder-tokenizer"
QWEN3 = DATA / "qwen3-coder-30b-a3b-instruct"

pytestmark = pytest.mark.skipif(not QWEN25.exists() or not QWEN3.exists(), reason="shared tokenizer data missing")

TEXTS = [
    "Hello, world!",
    "日本語のテキストと中文混合，还有한국어도 있어요。",
    "emoji: 😀🎉👩‍👩‍👧‍👦 🇯🇵 ❤️ and skin tones 👍🏽",
    "combining marks: e\u0301 a\u0308 n\u0303 — Cafe\u0301 vs Café, Ångström, ﬁ ligature",
    "def fib(n: int) -> int:\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "#include <stdio.h>\nint main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
    "fn main() { let v: Vec<u8> = vec![1, 2, 3]; println!(\"{:?}\", v); }",
    "const f = async (x) => { await fetch(`/api/${x}`); };  // JS",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
    "   leading spaces, trailing spaces   \n\n\n\t\t\ttabs\r\n\r\nwindows\n \n  \n",
    "        deeply\n            indented\n                code",
    "numbers 1234567890 3.14159 -42 1e10 0xFF 1,000,000",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call><|endoftext|>",
    "<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>",
    "it's we're they've I'm you'll he'd IT'S",
    "",
    " ",
    "\n",
]
QWEN3_ONLY_TEXTS = ["<think>\nreasoning\n</think>\n\nanswer", "<tool_response>\nok\n</tool_response>"]


def write_qwen25_gguf(path: Path) -> None:
    """A .gguf holding the Qwen2.5-Coder tokenizer (as llama.cpp's converter writes it) and one tiny tensor."""
    import gguf

    data = json.loads((QWEN25 / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = data["model"]["vocab"]
    tokens = [None] * len(vocab)
    for token, token_id in vocab.items():
        tokens[token_id] = token
    types = [gguf.TokenType.UNUSED if t.startswith("[PAD") else gguf.TokenType.NORMAL for t in tokens]
    for added in data["added_tokens"]:
        types[added["id"]] = GGUF_CONTROL if added["special"] else GGUF_USER_DEFINED
    merges = [" ".join(m) if isinstance(m, list) else m for m in data["model"]["merges"]]

    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_block_count(1)
    writer.add_context_length(32768)
    writer.add_embedding_length(4)
    writer.add_feed_forward_length(8)
    writer.add_head_count(1)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(151643)
    writer.add_eos_token_id(151645)
    writer.add_pad_token_id(151643)
    writer.add_add_bos_token(False)
    writer.add_chat_template((QWEN25 / "chat_template.jinja").read_text(encoding="utf-8"))
    writer.add_tensor("token_embd.weight", np.zeros((2, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture(scope="module")
def hf_qwen25():
    return AutoTokenizer.from_pretrained(QWEN25)


@pytest.fixture(scope="module")
def hf_qwen3():
    return AutoTokenizer.from_pretrained(QWEN3)


@pytest.fixture(scope="module")
def qwen25():
    return Tokenizer.from_path(QWEN25)


@pytest.fixture(scope="module")
def qwen3():
    return Tokenizer.from_path(QWEN3)


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "qwen25-tokenizer.gguf"
    write_qwen25_gguf(path)
    with pytest.MonkeyPatch.context() as env:  # the built tokenizer is cached per file: keep it out of ~/.cache
        env.setenv("QCODER_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield path


@pytest.fixture(scope="module")
def gguf_tokenizer(gguf_file):
    """Built from the file's metadata (the first load of this file)."""
    return Tokenizer.from_path(gguf_file)


@pytest.fixture(scope="module")
def gguf_tokenizer_cached(gguf_file, gguf_tokenizer):
    """The same file loaded again: from the cached, serialized pipeline."""
    from qcoder.engine import tokenizer

    assert tokenizer._read_cache(tokenizer._gguf_cache_file(gguf_file)) is not None
    return Tokenizer.from_path(gguf_file)


@pytest.fixture(scope="module", params=["qwen2.5 dir", "qwen3 dir", "qwen2.5 gguf", "qwen2.5 gguf cached"])
def pair(request, hf_qwen25, hf_qwen3):
    """(ours, HF's) for each way of loading."""
    if request.param == "qwen2.5 dir":
        return request.getfixturevalue("qwen25"), hf_qwen25
    if request.param == "qwen3 dir":
        return request.getfixturevalue("qwen3"), hf_qwen3
    if request.param == "qwen2.5 gguf cached":
        return request.getfixturevalue("gguf_tokenizer_cached"), hf_qwen25
    return request.getfixturevalue("gguf_tokenizer"), hf_qwen25


def random_text(seed: int, length: int = 400) -> str:
    """Mixed scripts, emoji, digits and whitespace: stresses BPE merges and byte-level splits of characters."""
    rng = random.Random(seed)
    pools = ["abcXYZ_", "0123456789", " \t\n\r", "{}()[];:.,'\"<>|/\\", "日本語中文한국어", "😀🎉👍🏽🇯🇵", "é\u0301ñ\u0303ßø"]
    return "".join(rng.choice(rng.choice(pools)) for _ in range(length))


def test_encode_decode_match_hf(pair):
    ours, hf = pair
    texts = TEXTS + (QWEN3_ONLY_TEXTS if hf.convert_tokens_to_ids("<think>") is not None else [])
    for text in texts + [random_text(seed) for seed in range(20)]:
        ids = ours.encode(text)
        assert ids == hf.encode(text, add_special_tokens=False), text
        assert ours.decode(ids) == hf.decode(ids), text
        assert ours.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True), text


def test_round_trip(pair):
    ours, _ = pair
    for text in TEXTS + [random_text(seed) for seed in range(5)]:
        nfc_safe = text.replace("\u0301", "").replace("\u0308", "").replace("\u0303", "")  # NFC may compose these
        assert ours.decode(ours.encode(nfc_safe)) == nfc_safe


def test_digits_are_split_one_by_one(pair):
    ours, _ = pair
    ids = ours.encode("12345")
    assert [ours.decode([i]) for i in ids] == ["1", "2", "3", "4", "5"]


def test_special_tokens_and_metadata(pair):
    ours, hf = pair
    im_end = hf.convert_tokens_to_ids("<|im_end|>")
    assert ours.encode("<|im_end|>") == [im_end]
    assert ours.token_to_id("<|im_end|>") == im_end
    assert {im_end, hf.convert_tokens_to_ids("<|endoftext|>")} <= ours.eos_token_ids
    assert ours.vocab_size == len(hf)
    assert ours.eos_token == "<|im_end|>"
    assert ours.chat_template and "<|im_start|>" in ours.chat_template


def test_generation_config_is_read(qwen3, qwen25):
    assert qwen3.generation_config["top_k"] == 20
    assert qwen3.eos_token_ids == {151645, 151643}
    assert qwen25.generation_config == {}


def test_gguf_special_token_names(gguf_tokenizer, gguf_tokenizer_cached):
    for tokenizer in (gguf_tokenizer, gguf_tokenizer_cached):
        assert tokenizer.bos_token == "<|endoftext|>"
        assert tokenizer.pad_token == "<|endoftext|>"
        assert tokenizer.chat_template == (QWEN25 / "chat_template.jinja").read_text(encoding="utf-8")
        assert tokenizer.eos_token_ids == gguf_tokenizer.eos_token_ids
        assert tokenizer.special_token_ids == gguf_tokenizer.special_token_ids


def test_a_damaged_tokenizer_cache_is_rebuilt(gguf_file, gguf_tokenizer):
    from qcoder.engine import tokenizer

    cache = tokenizer._gguf_cache_file(gguf_file)
    fields = tokenizer._fields_file(cache)
    damages = [(cache, '{"model": {"type": "BPE", "vocab'), (cache, "{}"), (fields, "{"), (fields, '{"eos": 1}'),
               (fields, "[]")]
    for file, damage in damages:  # e.g. a disk that filled up under an older version
        file.write_text(damage)
        assert Tokenizer.from_path(gguf_file).encode("def f(): pass") == gguf_tokenizer.encode("def f(): pass")
        backend, read = tokenizer._read_cache(cache)  # rewritten whole
        assert read["eos_token"] == "<|im_end|>" and backend.get_vocab_size() == gguf_tokenizer.vocab_size


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(QcoderError, match="no tokenizer"):
        Tokenizer.from_path(tmp_path / "nope")
    with pytest.raises(QcoderError, match="vocab.json"):
        Tokenizer.from_path(tmp_path)


STREAM_TEXTS = [
    "😀🎉👩‍👩‍👧‍👦🇯🇵 日本語のテキスト 😀 한국어 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ∀x∈ℝ",
    "<|im_start|>assistant\n表情😀<|im_end|>\n" * 3,
    "🀄️🃏 ȧ̸̢ 𓀀𓁐 ",
]


def stream(tokenizer, ids, **kwargs) -> list[str]:
    decoder = IncrementalDecoder(tokenizer, **kwargs)
    return [decoder.add(i) for i in ids] + [decoder.flush()]


@pytest.mark.parametrize("text", STREAM_TEXTS + [random_text(seed) for seed in range(5)])
def test_incremental_decoding_equals_full_decode(text, qwen3):
    tok = qwen3
    ids = tok.encode(text)
    pieces = stream(tok, ids)
    assert "".join(pieces) == tok.decode(ids)
    assert all("\ufffd" not in piece for piece in pieces)
    # Rare characters span several byte-level tokens, so some steps must have held text back.
    if "𝔘" in text:
        assert "" in pieces[:-1]


def test_ids_past_the_vocabulary_decode_to_nothing(qwen3):
    ids = [qwen3.vocab_size + 5, *qwen3.encode("ok")]
    assert "".join(stream(qwen3, ids)) == qwen3.decode(ids) == "ok"


def test_incremental_decoding_skips_special_tokens(qwen3):
    tok = qwen3
    ids = tok.encode(STREAM_TEXTS[1])
    assert "".join(stream(tok, ids, skip_special_tokens=True)) == tok.decode(ids, skip_special_tokens=True)


def test_incremental_decoding_of_invalid_bytes_matches_full_decode(qwen3):
    tok = qwen3
    pieces = tok.encode("𝔘")
    assert len(pieces) > 1
    ids = pieces[:1] + tok.encode("ok") + pieces[1:]  # a character cut in two by other text
    assert "".join(stream(tok, ids)) == tok.decode(ids)
