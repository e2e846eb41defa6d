"""`qcoder bench`: the table's ratios and the best-of-N reduction (the measurements themselves run by hand)."""

from __future__ import annotations

from qcoder import bench


def test_table_ratios_favour_the_faster_engine():
    qcoder = dict(load_s=2.0, peak_rss_mb=900.0, prefill_tps=600.0, decode_tps=60.0, batch_decode_tps=180.0)
    llama = dict(load_s=0.5, peak_rss_mb=600.0, prefill_tps=300.0, decode_tps=60.0, batch_decode_tps=120.0)
    rows = {row[0]: row for row in bench.table_rows({"qcoder": qcoder, "llama.cpp": llama})}
    assert rows["load (s)"][-1] == "0.25x"  # lower is better: llama.cpp's time over ours
    assert rows["prefill (tok/s)"][-1] == "2.00x"
    assert rows["batch decode vs llama.cpp 1 seq"][-1] == "3.00x"


def test_best_of_keeps_the_best_of_each_metric():
    runs = [dict(load_s=2.0, decode_tps=50.0), dict(load_s=1.0, decode_tps=40.0)]
    assert bench.best_of(runs) == dict(load_s=1.0, decode_tps=50.0)
