"""qcoder's engine against llama.cpp (llama-cpp-python) on the same GGUF file: speed side by side (what `qcoder bench
--vs-llama-cpp` prints), how many of the first 64 greedy tokens agree on 5 coding prompts, and with --accuracy what
each quantization mode costs against the fp32-dequantized model (top-1 agreement and mean KL of the logits over
a few hundred tokens of code, teacher-forced).

    .venv/bin/python benchmarks/engine_vs_reference.py --model qwen2.5-coder-0.5b-instruct --threads 2 --repeats 2
"""

from __future__ import annotations

import argparse
import sys

PROMPTS = [
    "def quicksort(arr):\n",
    "# Return the n-th Fibonacci number, iteratively.\ndef fib(n: int) -> int:\n",
    "class LRUCache:\n    def __init__(self, capacity: int):\n",
    "import re\n\ndef is_valid_email(address: str) -> bool:\n",
    "function debounce(fn, wait) {\n",
]
AGREE_TOKENS = 64


def agreement(path: str, quant: str, threads: int) -> list[tuple[int, int]]:
    """Per prompt: (length of the common greedy prefix, positions equal) out of AGREE_TOKENS."""
    from qcoder import bench
    from qcoder.engine.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_path(path)
    prompts = [tokenizer.encode(p) for p in PROMPTS]
    ours = bench.in_child(
        bench.qcoder_greedy, path=path, prompts=prompts, max_tokens=AGREE_TOKENS, quant=quant, threads=threads
    )
    ref = bench.in_child(bench.llama_cpp_greedy, path=path, prompts=prompts, max_tokens=AGREE_TOKENS, threads=threads)
    out = []
    for a, b in zip(ours, ref, strict=True):
        prefix = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        out.append((prefix, sum(x == y for x, y in zip(a, b, strict=False))))
    return out


def accuracy(path: str, modes: list[str], threads: int, tokens: int = 320) -> list[tuple[str, float, float]]:
    """(mode, top-1 agreement, mean KL(fp32 || mode)) of the logits over `tokens` tokens of qcoder's own source."""
    import torch

    from qcoder.bench import bench_token_ids
    from qcoder.model.loader import load_model
    from qcoder.model.qwen import ForwardBatch, allocate_kv_cache

    torch.set_num_threads(threads)
    ids = bench_token_ids(path, tokens)

    def logits(model, config):
        batch = ForwardBatch.for_new_prompts([ids], all_logits=True)
        return model(batch, allocate_kv_cache(config, batch.num_slots, torch.float32)).log_softmax(-1)

    model, config = load_model(path)
    ref = logits(model, config)
    del model
    rows = []
    for mode in modes:
        model, config = _load_mode(path, mode)
        out = logits(model, config)
        kl = (ref.exp() * (ref - out)).sum(-1)
        rows.append((mode, (out.argmax(-1) == ref.argmax(-1)).float().mean().item(), kl.mean().item()))
        del model
    return rows


def _load_mode(path: str, mode: str):
    """auto (GGUF kernels), auto-torch (auto's int8/int4 mapping onto PyTorch kernels), int8, int4, int4+int4head."""
    from qcoder.model import cpu_kernels
    from qcoder.model.gguf import GGUFCheckpoint
    from qcoder.model.loader import load_model
    from qcoder.model.quant import quantize_model

    if mode in ("auto", "int8", "int4"):
        return load_model(path, quant=mode)
    if mode == "auto-torch":
        with cpu_kernels.disabled():
            return load_model(path, quant="auto")
    model, config = load_model(path)
    gguf = GGUFCheckpoint(path) if path.endswith(".gguf") else None
    return quantize_model(model, "int4", gguf=gguf, lm_head="int4"), config


def main(argv=None) -> int:
    from qcoder.model.registry import DEFAULT_MODEL

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quant", default="auto", choices=["none", "int8", "int4", "auto"])
    p.add_argument("--prompt-tokens", type=int, default=512)
    p.add_argument("--gen-tokens", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--omp-wait-policy", default="spin", choices=["spin", "passive", "active"])
    p.add_argument("--no-speed", action="store_true", help="skip the speed table")
    p.add_argument("--accuracy", action="store_true", help="also measure each quantization mode against fp32")
    args = p.parse_args(argv)
    from qcoder.threads import configure_openmp

    configure_openmp(args.omp_wait_policy)

    from rich.console import Console
    from rich.table import Table

    from qcoder import bench
    from qcoder.model.registry import resolve_model

    path = str(resolve_model(args.model))
    console = Console()
    if not args.no_speed:
        bench.print_table(bench.run_bench_with(args, path, vs_llama_cpp=True), args)

    table = Table(title=f"greedy agreement with llama.cpp, first {AGREE_TOKENS} tokens (qcoder --quant {args.quant})")
    for col in ("prompt", "common prefix", "equal positions"):
        table.add_column(col)
    for prompt, (prefix, equal) in zip(PROMPTS, agreement(path, args.quant, args.threads), strict=True):
        table.add_row(repr(prompt.splitlines()[0][:40]), f"{prefix}/{AGREE_TOKENS}", f"{equal}/{AGREE_TOKENS}")
    console.print(table)

    if args.accuracy:
        table = Table(title="quantization cost vs the fp32-dequantized model (320 tokens of code, teacher-forced)")
        for col in ("mode", "top-1 agreement", "mean KL"):
            table.add_column(col)
        for mode, agree, kl in accuracy(path, ["auto", "auto-torch", "int8", "int4", "int4+int4head"], args.threads):
            table.add_row(mode, f"{agree:.3f}", f"{kl:.5f}")
        console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
