"""qcoder/model/gguf.py overrides the private `GGUFReader._get_field_parts` (opening a Qwen file takes a fraction of
a second instead of ~16 s). pyproject pins `gguf` to the 0.19 series it was written against; when the pin moves, this
fails loudly, naming what moved, if the release changed the private parts the override relies on, instead of letting
a load break or silently slow down."""

from __future__ import annotations

import inspect

from gguf import GGUFReader


def test_the_private_reader_api_the_override_uses_is_still_there():
    parameters = list(inspect.signature(GGUFReader._get_field_parts).parameters)
    assert parameters == ["self", "orig_offs", "raw_type"], f"GGUFReader._get_field_parts is now {parameters}"
    assert callable(getattr(GGUFReader, "_get", None)), "GGUFReader._get is gone"
    assert isinstance(getattr(GGUFReader, "gguf_scalar_to_np", None), dict), "GGUFReader.gguf_scalar_to_np is gone"
    # The reader must still build its fields through the method we override.
    assert "_get_field_parts" in inspect.getsource(GGUFReader._build_fields), "fields no longer use _get_field_parts"
