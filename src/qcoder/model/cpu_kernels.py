"""The C kernels (cpu_kernels.c): built at first use, loaded with ctypes, and thin wrappers around them.

The C file is compiled with the machine's C compiler (-O3 -march=native, OpenMP) into the cache directory, keyed by
its source, the compiler flags and the CPU; concurrent builders each write a temp file and rename it. Where that is
impossible (no compiler, not x86-64 with AVX2, QCODER_NATIVE_KERNELS=0), `unavailable()` says why and callers use
PyTorch. QCODER_KERNEL_ARCH=haswell (any `-march` value) builds for another instruction set than the machine's:
CI runs the kernel tests a second time that way, so the AVX2-only code paths are exercised on an AVX-512 machine.

`describe()` says what runs where, for reports: the CPU, the instruction sets that matter, the kernels' build and
the prefill kernel chosen for this machine (gguf_linear.prefill_kernel).

- GGUF matrix products and dequantization: see gguf_linear.py.
- `attention_decode`, `rmsnorm`, `rope_`, `silu_mul`: decode's small ops, where PyTorch's dispatch (SDPA and
  bmm ~20-50 us per call) costs more than the arithmetic.
- A decode step's decoder layers in one call: FusedDecode in gguf_linear.py.
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
    if machine() not in ("x86_64", "amd64"):
        return f"the C kernels are x86-64 only (this is {machine()})"
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return "no C compiler (cc) to build the C kernels"
    try:
        library = _build(cc)
    except (OSError, subprocess.SubprocessError) as e:
        return f"building the C kernels failed: {str(e).strip().splitlines()[-1] if str(e).strip() else e}"
    lib = ctypes.CDLL(str(library))  # after torch: the kernels share its OpenMP runtime and thread pool
    for name, argtypes in _SIGNATURES.items():
        function = getattr(lib, name)
        function.argtypes, function.restype = argtypes, None
    lib.qc_features.restype = ctypes.c_int
    lib.qc_regrouped_type.restype = ctypes.c_int
    lib.qc_regrouped_row_bytes.restype = ctypes.c_int64
    lib.path = library
    return lib


def machine() -> str:
    """The CPU architecture, lower case (a function, so that tests can pretend to be another machine)."""
    return platform.machine().lower()


def arch() -> str:
    """The `-march` the kernels are built for: the machine's own unless QCODER_KERNEL_ARCH says otherwise."""
    return os.environ.get("QCODER_KERNEL_ARCH", "native")


_p, _i32, _i64, _f32 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_float
_SIGNATURES = {  # the C entry points (all return void), as declared in cpu_kernels.c
    "qc_matmul": [_p, _i32, _i32, _p, _i32, _p, _i64, _i32],
    "qc_get_rows": [_i32, _p, _i64, _i32, _p, _i64, _p, _i32],
    "qc_dequantize": [_p, _i32, _i32, _i64, _i64, _p, _i32, _i32],
    "qc_attention_decode": [_p, _p, _p, _p, _p, _i32, _i32, _i32, _i32, _i32, _f32, _p, _i32, _i32],
    "qc_rmsnorm": [_p, _p, _p, _i64, _i32, _f32, _i32],
    "qc_rope": [_p, _i64, _i64, _i32, _i32, _p, _p],
    "qc_silu_mul": [_p, _p, _i64, _i32, _i32],
    "qc_decode_layers": [_p, _i32, _p, *[_i32] * 6, _f32, _f32, *[_p] * 5, _i32, _i32, _i32],
    "qc_regroup": [_i32, _p, _i64, _i32, _p, _i32],
    "qc_regrouped_type": [_i32],
    "qc_regrouped_row_bytes": [_i32, _i32],
}


def _build(cc: str) -> Path:
    """Compile once per (source, compiler, CPU); concurrent builders each write a temp file and rename it."""
    from qcoder.model.registry import cache_dir

    flags = ["-O3", f"-march={arch()}", "-ffp-contract=off", "-fopenmp", "-fPIC", "-shared"]
    key = hashlib.sha256(_SOURCE.read_bytes() + " ".join([cc, *flags, _cpu_flags()]).encode()).hexdigest()[:16]
    target = cache_dir() / "kernels" / f"cpu_kernels-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".so")
    os.close(fd)
    try:
        cmd = [cc, *flags, str(_SOURCE), "-o", tmp]
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
    return _cpuinfo_field("flags") or platform.processor()


def _cpuinfo_field(name: str) -> str:
    """The first `name : value` of /proc/cpuinfo (Linux), or ''."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    except OSError:
        pass
    return ""


# The instruction sets that decide which kernels are fast, as /proc/cpuinfo names them.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")


@cache
def cpu_isa() -> dict[str, bool]:
    """Which of ISA_FLAGS this CPU has (read once: prefill layers ask on every call)."""
    flags = set(_cpu_flags().split())
    return {flag: flag in flags for flag in ISA_FLAGS}


def has_bf16() -> bool:
    """Whether the CPU multiplies bf16 in hardware (AVX-512 BF16 or AMX): elsewhere a bf16 GEMM is emulated, and
    slower than fp32. PyTorch's dispatch capped at AVX2 (ATEN_CPU_CAPABILITY, to mimic an older CPU) counts as none."""
    isa = cpu_isa()
    capped = torch.backends.cpu.get_cpu_capability() in ("AVX2", "DEFAULT", "NO AVX")
    return (isa["avx512_bf16"] or isa["amx_bf16"]) and not capped


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


def describe_kernels() -> str:
    """The C kernels and the instructions they were built with, or why there are none."""
    built = kernels()
    if isinstance(built, str):
        return f"PyTorch kernels ({built})"
    features = built.qc_features()
    build = "" if arch() == "native" else f", -march={arch()}"
    return "C kernels (AVX2" + (", VNNI" if features & 1 else "") + (", AVX-512" if features & 2 else "") + build + ")"


def describe() -> str:
    """Where a figure was measured and what ran there, for reports: the CPU model, the instruction sets that matter
    (a - marks one it lacks), PyTorch's dispatch level, the kernels, the prefill kernel chosen and the dtype of
    long-context prefill attention."""
    from qcoder.model.gguf_linear import prefill_kernel

    cpu = _cpuinfo_field("model name") or platform.processor() or machine()
    flags = " ".join(("" if present else "-") + flag for flag, present in cpu_isa().items())
    torch_isa = torch.backends.cpu.get_cpu_capability()
    attention = "bf16" if has_bf16() else "fp32"  # past attention.BF16_CONTEXT keys
    return (f"{cpu} [{flags}], torch {torch_isa}, {describe_kernels()}, prefill: {prefill_kernel().describe()}, "
            f"long-context attention: {attention}")


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
