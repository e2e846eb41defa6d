"""The C kernels (cpu_kernels.c): built at first use, loaded with ctypes, and thin wrappers around them.

The C file is compiled with the machine's C compiler (-O3 -march=native, OpenMP) into the cache directory, keyed by
its source and the CPU; concurrent builders each write a temp file and rename it. Where that is impossible (no
compiler, not x86-64 with AVX2, QCODER_NATIVE_KERNELS=0), `unavailable()` says why and callers use PyTorch.

- GGUF matrix products and dequantization: see gguf_linear.py.
- `attention_decode`: one query per sequence over the paged KV cache (single-stream decode), where PyTorch's
  SDPA and bmm cost ~20-50 us per call at these sizes, more than the arithmetic.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import torch

_SOURCE = Path(__file__).with_name("cpu_kernels.c")


# ---------------------------------------------------------------- building the kernels


@cache
def kernels() -> ctypes.CDLL | str:
    """The loaded library, or why there is none."""
    if os.environ.get("QCODER_NATIVE_KERNELS", "1") == "0":
        return "disabled by QCODER_NATIVE_KERNELS=0"
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return f"the C kernels are x86-64 only (this is {platform.machine()})"
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return "no C compiler (cc) to build the C kernels"
    try:
        library = _build(cc)
    except (OSError, subprocess.SubprocessError) as e:
        return f"building the C kernels failed: {str(e).strip().splitlines()[-1] if str(e).strip() else e}"
    lib = ctypes.CDLL(str(library))  # after torch: the kernels share its OpenMP runtime and thread pool
    p, i32, i64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64
    lib.qc_matmul.argtypes = [p, i32, i32, p, i32, p, i64, i32]
    lib.qc_matmul.restype = None
    lib.qc_get_rows.argtypes = [i32, p, i64, i32, p, i64, p, i32]
    lib.qc_get_rows.restype = None
    lib.qc_dequantize.argtypes = [p, i32, i32, i64, i64, p, i32, i32]
    lib.qc_dequantize.restype = None
    lib.qc_features.restype = i32
    f32 = ctypes.c_float
    lib.qc_attention_decode.argtypes = [p, p, p, p, p, i32, i32, i32, i32, i32, f32, p, i32, i32]
    lib.qc_attention_decode.restype = None
    lib.qc_rmsnorm.argtypes = [p, p, p, i64, i32, f32, i32]
    lib.qc_rmsnorm.restype = None
    lib.qc_rope.argtypes = [p, i64, i64, i32, i32, p, p]
    lib.qc_rope.restype = None
    lib.qc_silu_mul.argtypes = [p, p, i64, i32, i32]
    lib.qc_silu_mul.restype = None
    lib.qc_decode_layers.argtypes = [p, i32, p, i32, i32, i32, i32, i32, i32, f32, f32, p, p, p, p, p, i32, i32, i32]
    lib.qc_decode_layers.restype = None
    return lib


def _build(cc: str) -> Path:
    """Compile once per (source, compiler, CPU); concurrent builders each write a temp file and rename it."""
    from qcoder.model.registry import cache_dir

    key = hashlib.sha256(_SOURCE.read_bytes() + cc.encode() + _cpu_flags().encode()).hexdigest()[:16]
    target = cache_dir() / "kernels" / f"cpu_kernels-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".so")
    os.close(fd)
    try:
        cmd = [cc, "-O3", "-march=native", "-ffp-contract=off", "-fopenmp", "-fPIC", "-shared", str(_SOURCE), "-o", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            errors = [line for line in done.stderr.splitlines() if "error" in line]
            raise OSError(errors[0] if errors else f"{cc} exited with {done.returncode}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor()


def unavailable() -> str | None:
    """None when the C kernels are ready, else the reason they cannot be used."""
    lib = kernels()
    return lib if isinstance(lib, str) else None


@contextlib.contextmanager
def disabled():
    """Within this block the kernels count as unavailable (for tests and benchmarks of the PyTorch paths)."""
    saved = os.environ.get("QCODER_NATIVE_KERNELS")
    os.environ["QCODER_NATIVE_KERNELS"] = "0"
    kernels.cache_clear()
    try:
        yield
    finally:
        if saved is None:
            del os.environ["QCODER_NATIVE_KERNELS"]
        else:
            os.environ["QCODER_NATIVE_KERNELS"] = saved
        kernels.cache_clear()


def describe() -> str:
    """What runs, for reports: the C kernels and the instructions they were built with, or why there are none."""
    built = kernels()
    if isinstance(built, str):
        return f"PyTorch kernels ({built})"
    features = built.qc_features()
    return "C kernels (AVX2" + (", VNNI" if features & 1 else "") + (", AVX-512" if features & 2 else "") + ")"


def lib() -> ctypes.CDLL:
    lib = kernels()
    if isinstance(lib, str):
        raise RuntimeError(lib)
    return lib


def attention_decode(q: torch.Tensor, cache: torch.Tensor, slots: torch.Tensor, context_lens: torch.Tensor) -> torch.Tensor:
    """softmax(q K^T / sqrt(d)) V for one query per sequence. q: [B, heads, head_dim] fp32; cache: [2, num_slots,
    kv_heads, head_dim] fp16 or fp32; slots: [B, max_context] int64 cache slots; context_lens: [B] int64."""
    batch, heads, head_dim = q.shape
    slots, context_lens = slots.to(torch.int64).contiguous(), context_lens.to(torch.int64).contiguous()
    out = torch.empty_like(q)
    lib().qc_attention_decode(
        q.data_ptr(),
        cache[0].data_ptr(),
        cache[1].data_ptr(),
        slots.data_ptr(),
        context_lens.data_ptr(),
        batch,
        slots.shape[1],
        heads,
        cache.shape[2],
        head_dim,
        head_dim**-0.5,
        out.data_ptr(),
        int(cache.dtype == torch.float16),
        torch.get_num_threads(),
    )
    return out


def rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) * weight over the last dimension; x contiguous fp32."""
    out = torch.empty_like(x)
    dim = x.shape[-1]
    lib().qc_rmsnorm(x.data_ptr(), weight.data_ptr(), out.data_ptr(), x.numel() // dim, dim, eps, torch.get_num_threads())
    return out


def rope_(qkv: torch.Tensor, heads: int, head_dim: int, cos: torch.Tensor, sin: torch.Tensor) -> None:
    """Rotate, in place, the first `heads` heads of each row of qkv ([T, width] fp32, rows contiguous)."""
    lib().qc_rope(qkv.data_ptr(), qkv.stride(0), qkv.shape[0], heads, head_dim, cos.data_ptr(), sin.data_ptr())


def silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up for gate_up = [gate | up] along the last dimension (contiguous fp32)."""
    n = gate_up.shape[-1] // 2
    out = gate_up.new_empty(*gate_up.shape[:-1], n)
    lib().qc_silu_mul(gate_up.data_ptr(), out.data_ptr(), gate_up.numel() // (2 * n), n, torch.get_num_threads())
    return out
