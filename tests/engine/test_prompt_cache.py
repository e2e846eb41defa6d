"""The prompt cache on disk: a system turn computed by one engine is loaded, not computed, by the next one."""

from pathlib import Path

import pytest

from qcoder.engine.prompt_cache import model_key
from qcoder.engine.sampling import SamplingParams

from .test_engine import make_llm

GREEDY = SamplingParams(temperature=0, max_tokens=16, ignore_eos=True)
SYSTEM = "You are a coding agent. Use the tools to read, edit and test the code. " * 6


def chat(llm, user: str, system: str | None = SYSTEM) -> list[int]:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    return llm.tokenizer.encode(llm.engine.chat_template.render(messages))


def kept_files(root: Path) -> list[Path]:
    return sorted(root.glob("*/*.kv"))


def generate(llm, ids):
    return llm.generate([ids], GREEDY)[0].token_ids


def test_a_new_engine_loads_the_system_turn_instead_of_computing_it(tiny_qwen2, tmp_path):
    reference = make_llm(tiny_qwen2)
    first = make_llm(tiny_qwen2, prompt_cache=tmp_path)
    ids = chat(first, "Fix the bug in wrap.py")
    assert generate(first, ids) == generate(reference, ids)
    assert len(kept_files(tmp_path)) == 1
    assert first.engine.stats()["prompt_tokens_loaded"] == 0

    second = make_llm(tiny_qwen2, prompt_cache=tmp_path)  # a new process, as far as the cache is concerned
    other = chat(second, "Add a --count flag")  # the same system turn, another task
    assert generate(second, other) == generate(reference, other)
    stats = second.engine.stats()
    system_end = other.index(second.tokenizer.token_to_id("<|im_end|>")) + 1
    assert stats["prompt_tokens_loaded"] == system_end // 16 * 16 >= 64
    assert stats["prompt_tokens_computed"] == len(other) - stats["prompt_tokens_loaded"]
    assert len(kept_files(tmp_path)) == 1  # nothing new to keep


def test_only_a_system_turn_is_kept(tiny_qwen2, tmp_path):
    llm = make_llm(tiny_qwen2, prompt_cache=tmp_path)
    generate(llm, chat(llm, "a private question " * 20, system=None))
    generate(llm, chat(llm, "hello", system="Be brief."))  # shorter than the 64 tokens worth keeping
    assert kept_files(tmp_path) == []


def test_a_damaged_file_is_computed_again_and_replaced(tiny_qwen2, tmp_path):
    reference = make_llm(tiny_qwen2)
    generate(make_llm(tiny_qwen2, prompt_cache=tmp_path), chat(reference, "first"))
    [kept] = kept_files(tmp_path)
    kept.write_bytes(b"not a tensor")
    llm = make_llm(tiny_qwen2, prompt_cache=tmp_path)
    ids = chat(llm, "second")
    assert generate(llm, ids) == generate(reference, ids)
    assert llm.engine.stats()["prompt_tokens_loaded"] == 0
    assert [f.name for f in kept_files(tmp_path)] == [kept.name] and kept.stat().st_size > 1000


def test_the_folder_changes_with_the_model_file_and_the_settings(tmp_path):
    model = tmp_path / "model.gguf"
    model.write_bytes(b"weights")
    key = model_key(model, "auto", "float32")
    assert key == model_key(model, "auto", "float32") != model_key(model, "int8", "float32")
    model.write_bytes(b"other weights")
    assert key != model_key(model, "auto", "float32")


def test_the_least_recently_used_files_of_every_model_go_first(tmp_path):
    import os

    import torch

    from qcoder.engine import prompt_cache

    caches = [prompt_cache.PromptCache(tmp_path, name) for name in ("old-version", "model")]
    keys = [bytes([i]) * 16 for i in range(prompt_cache.KEEP + 2)]
    for i, key in enumerate(keys):
        caches[i % 2].save(key, torch.zeros(1, 2, 16, 1, 4))
        os.utime(caches[i % 2]._file(key), (i, i))  # in order, whatever the file system's timestamp granularity
    assert len(kept_files(tmp_path)) == prompt_cache.KEEP
    assert not caches[0].has(keys[0]) and not caches[1].has(keys[1]) and caches[1].has(keys[-1])


@pytest.mark.parametrize("free_blocks", [2, 4])
def test_adopted_blocks_are_prefix_hits_and_never_evict_their_own_chain(free_blocks):
    from qcoder.engine.kv_cache import BlockManager

    class Seq:
        def __init__(self, tokens):
            self.token_ids, self.block_table, self.block_hashes, self.num_computed_tokens = tokens, [], [], 0

    manager = BlockManager(num_blocks=5, block_size=2)
    tokens = [1, 2, 3, 4, 5, 6, 7]  # three shareable blocks
    hashes = manager.chain_hashes(tokens, 3)
    first = Seq(tokens[:3])  # computes block 0 of the chain, then frees it: cached, on the free list
    assert manager.allocate(first)
    first.num_computed_tokens = 3
    manager.cache_computed_blocks(first)
    manager.free_sequence(first)
    while manager.num_free_blocks > free_blocks:  # others hold the rest
        manager._take_free_block()
    assert manager.missing(hashes) == [1, 2]
    taken = manager.adopt(hashes)
    if free_blocks == 2:  # one is block 0 of the chain itself: taking it would evict what the chain needs
        assert taken is None and manager.missing(hashes) == [1, 2]
        return
    assert sorted(taken) == [1, 2] and manager.missing(hashes) == []
    seq = Seq(tokens)
    assert manager.allocate(seq)
    assert seq.num_computed_tokens == 6 and seq.block_table[1:3] == [taken[1], taken[2]]
