"""qcoder: a Python-native agentic coding system around Qwen3-Coder."""

__version__ = "0.1.0"

__all__ = ["LLM", "SamplingParams", "QcoderError", "__version__"]

from qcoder.errors import QcoderError


def __getattr__(name):
    # Lazy: `import qcoder` (and `qcoder --help`) must not pay for importing torch.
    if name == "LLM":
        from qcoder.engine.llm import LLM

        return LLM
    if name == "SamplingParams":
        from qcoder.engine.sampling import SamplingParams

        return SamplingParams
    raise AttributeError(f"module 'qcoder' has no attribute {name!r}")
