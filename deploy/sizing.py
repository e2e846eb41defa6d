#!/usr/bin/env python3
"""Sizing on paper: weights, KV cache and GPUs for the Qwen coder models, computed from their configs.

    python deploy/sizing.py                          # the Markdown tables of docs/deploy.md
    python deploy/sizing.py --json                   # the same figures as JSON
    python deploy/sizing.py --write-docs docs/deploy.md   # refresh the tables between the sizing markers

Qwen3-Coder-30B-A3B is read from its config.json (shared/data beside the checkout, or --config-30b). The other
models' configs are not on this machine: their numbers are written below as data, copied from the published
config.json of the model card named in each entry's comment. Standard library only; nothing imports this file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

GB = 10**9
GIB = 2**30
# Bits per weight of each precision. int4 is group-wise (128 weights share a 16-bit scale and zero: 4 + 32/128 bits),
# as in AWQ/GPTQ checkpoints; fp8 is block-wise with one fp32 scale per 128x128 block (negligible).
BITS_PER_WEIGHT = {"bf16": 16.0, "fp8": 8.0, "int4": 4.25}
KV_BYTES = 2  # bf16 KV cache
GPU_GB = 80  # H100/A100 80 GB; H200 has 141 GB
GPU_MEMORY_UTILIZATION = 0.90  # vLLM's default share of each GPU
ACTIVATION_RESERVE_GB = 4  # per GPU: activations, CUDA graphs and the sampler's buffers
GPUS_PER_NODE = 8
FP8_BLOCK = 128  # fine-grained FP8 checkpoints quantize in 128x128 blocks
CONTEXTS = {"32K": 32 * 1024, "256K": 256 * 1024, "1M": 1024 * 1024}


@dataclass(frozen=True)
class ModelShape:
    name: str
    hf_repo: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int  # dense MLP width (unused by MoE layers)
    vocab: int
    tied_embeddings: bool
    qkv_bias: bool
    qk_norm: bool
    native_context: int
    max_context: int  # with YaRN, as the model card documents
    experts: int = 0
    experts_per_token: int = 0
    moe_intermediate: int = 0
    fp8_repo: str = ""  # the published FP8 checkpoint, when there is one

    @classmethod
    def from_config(cls, config: dict, *, name: str, hf_repo: str, max_context: int, fp8_repo: str = "") -> ModelShape:
        """From a Hugging Face config.json (qwen2 or qwen3_moe)."""
        moe = config.get("model_type") == "qwen3_moe"
        return cls(
            name=name,
            hf_repo=hf_repo,
            layers=config["num_hidden_layers"],
            hidden=config["hidden_size"],
            heads=config["num_attention_heads"],
            kv_heads=config["num_key_value_heads"],
            head_dim=config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"],
            intermediate=config["intermediate_size"],
            vocab=config["vocab_size"],
            tied_embeddings=config.get("tie_word_embeddings", False),
            qkv_bias=config.get("qkv_bias", config.get("model_type") == "qwen2"),
            qk_norm=config.get("model_type", "").startswith("qwen3"),
            native_context=config["max_position_embeddings"],
            max_context=max_context,
            experts=config.get("num_experts", 0) if moe else 0,
            experts_per_token=config.get("num_experts_per_tok", 0) if moe else 0,
            moe_intermediate=config.get("moe_intermediate_size", 0) if moe else 0,
            fp8_repo=fp8_repo,
        )

    # --- parameters ---------------------------------------------------------------------------------------------

    def attention_params(self) -> int:
        q = self.hidden * self.heads * self.head_dim
        kv = 2 * self.hidden * self.kv_heads * self.head_dim
        o = self.heads * self.head_dim * self.hidden
        bias = (self.heads + 2 * self.kv_heads) * self.head_dim if self.qkv_bias else 0
        norms = 2 * self.head_dim if self.qk_norm else 0
        return q + kv + o + bias + norms

    def expert_params(self) -> int:
        """One expert's (or the dense MLP's) gate, up and down projections."""
        width = self.moe_intermediate if self.experts else self.intermediate
        return 3 * self.hidden * width

    def params(self) -> tuple[int, int]:
        """(total, active per token): embeddings, every layer's attention, norms, router and experts."""
        embeddings = self.vocab * self.hidden * (1 if self.tied_embeddings else 2)
        per_layer = self.attention_params() + 2 * self.hidden  # + the two RMSNorms
        if self.experts:
            router = self.hidden * self.experts
            total_layer = per_layer + router + self.experts * self.expert_params()
            active_layer = per_layer + router + self.experts_per_token * self.expert_params()
        else:
            total_layer = active_layer = per_layer + self.expert_params()
        final_norm = self.hidden
        return (
            embeddings + self.layers * total_layer + final_norm,
            embeddings + self.layers * active_layer + final_norm,
        )

    # --- memory -------------------------------------------------------------------------------------------------

    def weight_bytes(self, precision: str) -> int:
        return math.ceil(self.params()[0] * BITS_PER_WEIGHT[precision] / 8)

    def kv_bytes_per_token(self, kv_bytes: int = KV_BYTES) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * kv_bytes  # K and V, every layer

    def kv_bytes(self, context: int) -> int | None:
        """One sequence's KV cache at `context` tokens; None past what the model supports."""
        return self.kv_bytes_per_token() * context if context <= self.max_context else None


# Qwen3-Coder-30B-A3B-Instruct is read from its config.json; these are the rest of its card's facts.
QWEN3_CODER_30B = {
    "name": "Qwen3-Coder-30B-A3B-Instruct",
    "hf_repo": "Qwen/Qwen3-Coder-30B-A3B-Instruct",
    "max_context": 1024 * 1024,  # model card: 256K native, up to 1M with YaRN
    "fp8_repo": "Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8",
}

PUBLISHED = (
    # Numbers from the published config.json of Qwen/Qwen2.5-Coder-0.5B-Instruct (model card: 0.49B parameters,
    # 24 layers, 14 Q / 2 KV heads, 32,768-token context).
    ModelShape(
        name="qwen2.5-coder-0.5b-instruct",
        hf_repo="Qwen/Qwen2.5-Coder-0.5B-Instruct",
        layers=24,
        hidden=896,
        heads=14,
        kv_heads=2,
        head_dim=64,
        intermediate=4864,
        vocab=151936,
        tied_embeddings=True,
        qkv_bias=True,
        qk_norm=False,
        native_context=32768,
        max_context=32768,
    ),
    # Numbers from the published config.json of Qwen/Qwen2.5-Coder-1.5B-Instruct (model card: 1.54B parameters,
    # 28 layers, 12 Q / 2 KV heads, 32,768-token context).
    ModelShape(
        name="qwen2.5-coder-1.5b-instruct",
        hf_repo="Qwen/Qwen2.5-Coder-1.5B-Instruct",
        layers=28,
        hidden=1536,
        heads=12,
        kv_heads=2,
        head_dim=128,
        intermediate=8960,
        vocab=151936,
        tied_embeddings=True,
        qkv_bias=True,
        qk_norm=False,
        native_context=32768,
        max_context=32768,
    ),
    # Numbers from the published config.json of Qwen/Qwen3-Coder-480B-A35B-Instruct (model card: 480B total,
    # 35B active, 62 layers, 96 Q / 8 KV heads, 160 experts with 8 active, 256K native context, 1M with YaRN).
    ModelShape(
        name="Qwen3-Coder-480B-A35B-Instruct",
        hf_repo="Qwen/Qwen3-Coder-480B-A35B-Instruct",
        layers=62,
        hidden=6144,
        heads=96,
        kv_heads=8,
        head_dim=128,
        intermediate=8192,
        vocab=151936,
        tied_embeddings=False,
        qkv_bias=False,
        qk_norm=True,
        native_context=262144,
        max_context=1024 * 1024,
        experts=160,
        experts_per_token=8,
        moe_intermediate=2560,
        fp8_repo="Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8",
    ),
)

# The deployments the docs size: (model name, weight precision, context name, GB per GPU).
SCENARIOS = (
    ("qwen2.5-coder-0.5b-instruct", "bf16", "32K", GPU_GB),
    ("qwen2.5-coder-1.5b-instruct", "bf16", "32K", GPU_GB),
    ("Qwen3-Coder-30B-A3B-Instruct", "bf16", "256K", GPU_GB),
    ("Qwen3-Coder-30B-A3B-Instruct", "fp8", "256K", GPU_GB),
    ("Qwen3-Coder-30B-A3B-Instruct", "fp8", "1M", GPU_GB),
    ("Qwen3-Coder-480B-A35B-Instruct", "fp8", "256K", GPU_GB),
    ("Qwen3-Coder-480B-A35B-Instruct", "fp8", "256K", 141),
    ("Qwen3-Coder-480B-A35B-Instruct", "bf16", "256K", GPU_GB),
    ("Qwen3-Coder-480B-A35B-Instruct", "fp8", "1M", GPU_GB),
)


def find_30b_config() -> Path | None:
    """shared/data/qwen3-coder-30b-a3b-instruct/config.json beside this checkout (any ancestor's sibling)."""
    here = Path(__file__).resolve().parent
    for folder in (here, *here.parents):
        candidate = folder.parent / "shared" / "data" / "qwen3-coder-30b-a3b-instruct" / "config.json"
        if candidate.is_file():
            return candidate
    return None


MODEL_NAMES = (PUBLISHED[0].name, PUBLISHED[1].name, QWEN3_CODER_30B["name"], PUBLISHED[2].name)


def load_models(names: list[str], config_30b: Path | None) -> list[ModelShape]:
    """The named models, in MODEL_NAMES order; the 30B-A3B from its config.json."""
    published = {m.name: m for m in PUBLISHED}
    models = []
    for name in MODEL_NAMES:
        if name not in names:
            continue
        if name in published:
            models.append(published[name])
            continue
        if config_30b is None or not config_30b.is_file():
            raise SystemExit(
                f"sizing: error: {name} config.json not found ({config_30b or 'shared/data'}); pass --config-30b PATH"
            )
        models.append(ModelShape.from_config(json.loads(config_30b.read_text()), **QWEN3_CODER_30B))
    return models


# --- deployment -------------------------------------------------------------------------------------------------


def gpus_needed(model: ModelShape, precision: str, context: int, gpu_gb: int = GPU_GB) -> int:
    """The fewest GPUs (a power of two that divides the attention heads) holding the weights and one sequence's
    KV cache at `context` tokens, each GPU giving GPU_MEMORY_UTILIZATION of its memory less the activation reserve."""
    need = model.weight_bytes(precision) + model.kv_bytes_per_token() * context
    usable = gpu_gb * GB * GPU_MEMORY_UTILIZATION - ACTIVATION_RESERVE_GB * GB
    gpus = 1
    while gpus * usable < need or model.heads % gpus:
        gpus *= 2
    return gpus


def vllm_flags(model: ModelShape, precision: str, context: int, gpus: int) -> list[str]:
    """`vllm serve` arguments for one deployment (the Helm chart's vllm values map onto the same flags)."""
    repo = model.fp8_repo if precision == "fp8" else model.hf_repo
    tp = min(gpus, GPUS_PER_NODE)
    flags = [repo, f"--tensor-parallel-size {tp}"]
    if gpus > GPUS_PER_NODE:
        flags.append(f"--pipeline-parallel-size {gpus // GPUS_PER_NODE}")
    # FP8 experts are quantized in 128-wide blocks: a tensor-parallel slice of an expert must keep whole blocks,
    # else experts are spread whole across GPUs (expert parallel). MoE models with many GPUs gain from it anyway.
    if model.experts and (gpus >= GPUS_PER_NODE or (precision == "fp8" and (model.moe_intermediate // tp) % FP8_BLOCK)):
        flags.append("--enable-expert-parallel")
    flags.append(f"--max-model-len {context}")
    if context > model.native_context:
        factor = context / model.native_context
        rope = {"rope_type": "yarn", "factor": factor, "original_max_position_embeddings": model.native_context}
        flags.append(f"--hf-overrides '{json.dumps({'rope_scaling': rope}, separators=(',', ':'))}'")
    # Qwen3-Coder writes XML tool calls; Qwen2.5-Coder writes Hermes-style JSON ones.
    parser = "qwen3_coder" if model.name.lower().startswith("qwen3-coder") else "hermes"
    flags += ["--enable-auto-tool-choice", f"--tool-call-parser {parser}"]
    return flags


def figures(models: list[ModelShape]) -> dict:
    by_name = {m.name: m for m in models}
    out = {
        "assumptions": {
            "bits_per_weight": BITS_PER_WEIGHT,
            "kv_cache_dtype": "bf16",
            "gpu_gb": GPU_GB,
            "gpu_memory_utilization": GPU_MEMORY_UTILIZATION,
            "activation_reserve_gb": ACTIVATION_RESERVE_GB,
            "gpus_per_node": GPUS_PER_NODE,
        },
        "models": [],
        "deployments": [],
    }
    for m in models:
        total, active = m.params()
        out["models"].append(
            {
                **asdict(m),
                "params_total": total,
                "params_active": active,
                "weight_bytes": {p: m.weight_bytes(p) for p in BITS_PER_WEIGHT},
                "kv_bytes_per_token": m.kv_bytes_per_token(),
                "kv_bytes_per_sequence": {name: m.kv_bytes(tokens) for name, tokens in CONTEXTS.items()},
            }
        )
    for name, precision, context_name, gpu_gb in SCENARIOS:
        if name not in by_name:
            continue
        m, context = by_name[name], CONTEXTS[context_name]
        gpus = gpus_needed(m, precision, context, gpu_gb)
        out["deployments"].append(
            {
                "model": name,
                "precision": precision,
                "context": context_name,
                "gpu_gb": gpu_gb,
                "gpus": gpus,
                "nodes": math.ceil(gpus / GPUS_PER_NODE),
                "vllm_flags": vllm_flags(m, precision, context, gpus),
            }
        )
    return out


# --- output -----------------------------------------------------------------------------------------------------


def _gb(n: int | None) -> str:
    return "n/a" if n is None else f"{n / GB:,.1f}"


def _gib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / GIB:,.2f}"


def _billions(n: int) -> str:
    return f"{n / 1e9:.2f}B"


def markdown(fig: dict) -> str:
    a = fig["assumptions"]
    bits = ", ".join(f"{p} {b:g}" for p, b in a["bits_per_weight"].items())
    lines = [
        "Generated by `python deploy/sizing.py --write-docs docs/deploy.md`; do not edit by hand.",
        "",
        "| model | layers | KV heads x head dim | experts (active) | params total | params active | "
        "weights bf16 (GB) | fp8 (GB) | int4 (GB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in fig["models"]:
        experts = f"{m['experts']} ({m['experts_per_token']})" if m["experts"] else "dense"
        w = m["weight_bytes"]
        lines.append(
            f"| {m['name']} | {m['layers']} | {m['kv_heads']} x {m['head_dim']} | {experts} | "
            f"{_billions(m['params_total'])} | {_billions(m['params_active'])} | "
            f"{_gb(w['bf16'])} | {_gb(w['fp8'])} | {_gb(w['int4'])} |"
        )
    lines += [
        "",
        f"Weights at {bits} bits per weight. KV cache in bf16, for one sequence (n/a: past the model's context):",
        "",
        "| model | KV per token (KiB) | 32K (GiB) | 256K (GiB) | 1M (GiB) | native / max context |",
        "|---|---|---|---|---|---|",
    ]
    for m in fig["models"]:
        kv = m["kv_bytes_per_sequence"]
        lines.append(
            f"| {m['name']} | {m['kv_bytes_per_token'] / 1024:g} | {_gib(kv['32K'])} | {_gib(kv['256K'])} | "
            f"{_gib(kv['1M'])} | {m['native_context']:,} / {m['max_context']:,} |"
        )
    lines += [
        "",
        f"GPUs at `--gpu-memory-utilization {a['gpu_memory_utilization']}`, less "
        f"{a['activation_reserve_gb']} GB each for activations, holding the weights and one full-length sequence; "
        f"more than {a['gpus_per_node']} GPUs means several nodes (the chart's multi-node mode):",
        "",
        "| model | weights | context | GPUs x GB | nodes | `vllm serve` arguments |",
        "|---|---|---|---|---|---|",
    ]
    for d in fig["deployments"]:
        args = " ".join(d["vllm_flags"]).replace("|", "\\|")
        lines.append(
            f"| {d['model']} | {d['precision']} | {d['context']} | {d['gpus']} x {d['gpu_gb']} | {d['nodes']} | `{args}` |"
        )
    return "\n".join(lines) + "\n"


BEGIN, END = "<!-- sizing:begin -->", "<!-- sizing:end -->"


def write_docs(path: Path, tables: str) -> None:
    """Replace the text between the sizing markers, atomically."""
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"sizing: error: {path} has no {BEGIN} ... {END} markers")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    new = f"{head}{BEGIN}\n{tables}{END}{tail}"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(new)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-30b", type=Path, help="Qwen3-Coder-30B-A3B config.json (default: shared/data)")
    parser.add_argument("--model", action="append", choices=MODEL_NAMES, help="only this model (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--write-docs", type=Path, metavar="FILE", help="rewrite the tables in FILE")
    args = parser.parse_args(argv)
    if args.write_docs and args.model:
        parser.error("--write-docs writes every model's figures; drop --model")
    fig = figures(load_models(args.model or list(MODEL_NAMES), args.config_30b or find_30b_config()))
    if args.json:
        print(json.dumps(fig, indent=2))
    elif args.write_docs:
        write_docs(args.write_docs, markdown(fig))
    else:
        print(markdown(fig), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
