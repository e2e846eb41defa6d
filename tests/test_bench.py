"""`qcoder bench`: the table's ratios and the best-of-N reduction (the measurements themselves run by hand)."""

from __future__ import annotations

from qcoder import bench


def test_table_ratios_favour_the_faster_engine():
    qcoder = dict(import_s=1.0, load_s=2.0, peak_rss_mb=900.0, prefill_tps=600.0, decode_tps=60.0, batch_decode_tps=180.0)
    llama = dict(import_s=1.0, load_s=0.5, peak_rss_mb=600.0, prefill_tps=300.0, decode_tps=60.0, batch_decode_tps=120.0)
    rows = {row[0]: row for row in bench.table_rows({"qcoder": qcoder, "llama.cpp": llama})}
    assert rows["load (s)"][-1] == "0.25x"  # lower is better: llama.cpp's time over ours
    assert rows["prefill (tok/s)"][-1] == "2.00x"
    assert rows["batch decode vs llama.cpp 1 seq"][-1] == "3.00x"


def test_best_of_keeps_the_best_of_each_metric():
    runs = [dict(load_s=2.0, decode_tps=50.0), dict(load_s=1.0, decode_tps=40.0)]
    assert bench.best_of(runs) == dict(load_s=1.0, decode_tps=50.0)


def test_long_prompt_rows_appear_only_when_measured():
    base = dict(import_s=1.0, load_s=1.0, peak_rss_mb=1.0, prefill_tps=1.0, decode_tps=1.0, batch_decode_tps=1.0)
    labels = [row[0] for row in bench.table_rows({"qcoder": base})]
    assert not any("TTFT" in label for label in labels)
    long = dict(base, long_ttft_s=40.0, turn2_ttft_s=0.5, long_peak_rss_mb=900.0)
    ref = dict(base, long_ttft_s=80.0, turn2_ttft_s=1.0, long_peak_rss_mb=1200.0)
    rows = {row[0]: row for row in bench.table_rows({"qcoder": long, "llama.cpp": ref})}
    assert rows["TTFT, long prompt (s)"][1:] == ["40.0", "80.0", "2.00x"]
    assert rows[f"TTFT, turn 2: +{bench.TURN2_TOKENS} tokens (s)"][-1] == "2.00x"


def test_long_prompt_out_of_range_is_one_clear_error(tmp_path):
    import pytest

    from qcoder.errors import QcoderError

    with pytest.raises(QcoderError, match="--long-prompt must be 0"):
        bench.run_bench(tmp_path / "missing.gguf", long_prompt=10**6)


def test_speculation_rows_compare_with_llama_cpp_without_speculation():
    qcoder = dict(load_s=1.0, peak_rss_mb=800.0, prefill_tps=600.0, decode_tps=80.0, batch_decode_tps=200.0,
                  edit_decode_tps=80.0, edit_spec_decode_tps=180.0, edit_acceptance=0.9, edit_tokens_per_step=3.5,
                  spec_decode_tps=79.0)
    llama = dict(load_s=0.5, peak_rss_mb=600.0, prefill_tps=300.0, decode_tps=60.0, batch_decode_tps=120.0,
                 edit_decode_tps=60.0)
    rows = {row[0]: row for row in bench.table_rows({"qcoder": qcoder, "llama.cpp": llama})}
    assert rows["edit: decode, n-gram speculation (tok/s)"][1:] == ["180.0", "", "3.00x"]
    assert rows["edit: decode, 1 seq (tok/s)"][1:] == ["80.0", "60.0", "1.33x"]
    assert rows["edit: drafted tokens accepted"][1:] == ["90%", "", ""]
    alone = {row[0]: row for row in bench.table_rows({"qcoder": qcoder})}
    assert alone["decode, 1 seq, n-gram speculation (tok/s)"][1:] == ["79.0"]



def test_llama_cpp_isa_lists_the_instruction_sets_it_uses():
    info = "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | AVX512 = 0 | AVX512_VNNI = 0 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | "
    assert bench.isa_of_system_info(info) == "AVX AVX2 F16C FMA"
