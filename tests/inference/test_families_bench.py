"""`bench.families` in smoke mode: every family's tiny model captions through plain HF and the fast path,
interleaved, at one and two threads, and the table has a row for each."""

from __future__ import annotations

import json

from bench import families


def test_families_benchmark_smoke_mode_times_both_paths_of_every_family(tmp_path):
    out = tmp_path / "families.json"
    assert families.main(["--smoke", "--threads", "1,2", "--cache", str(tmp_path / "cache"), "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    rows = payload["results"]

    assert payload["smoke"] and payload["tokens"] == 4
    assert {(r["family"], r["threads"], r["path"]) for r in rows} == {
        (f, t, p) for f in families.FAMILIES for t in (1, 2)
        for p in ("plain HF fp32", "capbot fast (text fp16)", "capbot fast (text int8)")}
    assert all(r["median_ms"] > 0 and r["tokens"] >= 4 for r in rows)  # every path generated its tokens
    assert all(list((tmp_path / "cache" / f / ".capbot-fast").glob(f"vision-{f}-*")) for f in families.FAMILIES)
