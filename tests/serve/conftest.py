"""Real servers for the serve tests: uvicorn on a free 127.0.0.1 port, in a background thread, driven by the
official openai SDK.

Two kinds of model behind them:
- a tiny random Qwen2 checkpoint (real Qwen2.5 tokenizer, so vocab 151,936) loaded by the real loader;
- `ScriptedModel`, which obeys the model forward contract but whose logits force a fixed token script, so
  tool-call and reasoning output can be checked end to end through the engine and the server.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import openai
import pytest
import torch

from tests.conftest import QWEN25_TOKENIZER_FILES, REAL_VOCAB, require_files, tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return tiny_checkpoint(
        "qwen2",
        tmp_path_factory.mktemp("serve-tiny-qwen2"),
        tokenizer_files=QWEN25_TOKENIZER_FILES,
        vocab_size=REAL_VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        max_position_embeddings=4096,
        initializer_range=0.2,  # peaked logits: greedy choices are clear, so batching cannot flip them by rounding
    )


class LiveServer:
    """create_app(state) under uvicorn in a thread; `.client()` is an openai.OpenAI pointed at it."""

    def __init__(self, state):
        import uvicorn

        from qcoder.serve.app import create_app

        self.state = state
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(state), log_level="warning", timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)

    def client(self, api_key: str = "none", **kwargs) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.base_url}/v1", api_key=api_key, max_retries=0, timeout=120, **kwargs)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


def make_state(llm, *, model_name: str = "tiny", max_num_seqs: int = 8, max_waiting: int = 32, **settings):
    from qcoder.engine.async_engine import AsyncLLMEngine
    from qcoder.serve.state import ServerState

    return ServerState.for_engine(
        AsyncLLMEngine(llm), llm, model_name=model_name, max_num_seqs=max_num_seqs, max_waiting=max_waiting, **settings
    )


@pytest.fixture(scope="module")
def tiny_server(tiny_model_dir):
    """One server per test module on the tiny random model (context window 512 tokens)."""
    from qcoder.engine.engine import LLMEngine

    llm = LLMEngine(str(tiny_model_dir), max_model_len=512, max_num_seqs=8, max_num_batched_tokens=256)
    server = LiveServer(make_state(llm))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(tiny_server) -> openai.OpenAI:
    return tiny_server.client()


# ---------------------------------------------------------------- the scripted model


class ScriptedModel(torch.nn.Module):
    """Answers every chat turn with `self.script` (token ids), then `end_token`.

    Obeys the forward contract of qcoder.model.qwen: it writes each token's id into the engine-owned KV cache
    (as its "K"), reads its sequence's whole context back through the block table, counts the tokens after the
    generation prompt (the latest-ending of `markers`) and forces the next script token with peaked logits. So
    it behaves correctly under batching, chunked prefill and the prefix cache, like a real model.
    """

    def __init__(self, config, markers: list[list[int]], end_token: int):
        super().__init__()
        self.config = config
        self.markers = markers
        self.end_token = end_token
        self.script: list[int] = []

    def forward(self, batch, kv_caches):
        ids_cache = kv_caches[0][0, :, 0, 0]
        ids_cache[batch.slot_mapping] = batch.input_ids.to(ids_cache.dtype)
        ends = torch.tensor(batch.query_lens).cumsum(0)
        logits = torch.full((len(batch.logits_indices), self.config.vocab_size), -20.0)
        for row, flat_index in enumerate(batch.logits_indices.tolist()):
            b = int(torch.searchsorted(ends, flat_index, right=True))
            positions = torch.arange(batch.context_lens[b])
            slots = (
                batch.block_tables[b, positions // batch.block_size] * batch.block_size + positions % batch.block_size
            )
            context = ids_cache[slots].long().tolist()
            logits[row, self._next_token(context)] = 20.0
        return logits

    def _next_token(self, context: list[int]) -> int:
        prompt_end = max(
            (
                i + len(m)
                for m in self.markers
                for i in range(len(context) - len(m) + 1)
                if context[i : i + len(m)] == m
            ),
            default=len(context),
        )
        said = len(context) - prompt_end
        return self.script[said] if said < len(self.script) else self.end_token


def scripted_engine(
    tokenizer_dir: Path,
    chat_template: str | None = None,
    generation_prompts: tuple[str, ...] = ("<|im_start|>assistant\n",),
):
    """An LLMEngine around a ScriptedModel, with the tokenizer (and chat template) of `tokenizer_dir`."""
    from qcoder.engine.engine import LLMEngine
    from qcoder.engine.tokenizer import Tokenizer
    from qcoder.model.config import ModelConfig

    require_files([tokenizer_dir])
    tokenizer = Tokenizer.from_path(tokenizer_dir)
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    config = ModelConfig(
        architecture="qwen2",
        vocab_size=151936,
        hidden_size=8,
        intermediate_size=8,
        num_hidden_layers=1,
        num_attention_heads=1,
        num_key_value_heads=1,
        head_dim=1,
        max_position_embeddings=4096,
    )
    markers = [tokenizer.encode(text) for text in generation_prompts]
    model = ScriptedModel(config, markers, tokenizer.token_to_id("<|im_end|>"))
    return LLMEngine.from_parts(model, config, tokenizer, max_model_len=4096, max_num_seqs=4), model
