"""Smoke test of the benchmark harness: every part runs end to end at toy sizes and leaves files that parse.

Figures are not asserted (timings on a shared machine say nothing); what is checked is that the
harness measures what it claims (the throughput arrays really were stored, the restore verified them,
the comparison ran both methods on the demo) and that the outputs a reader or the README rely on
(JSON, CSV, markdown, PNG, summary.md with every issue-4 target) are there and well formed.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from bench.__main__ import main
from bench.common import DEMO

from bench import compare, overhead, scalability, summary, throughput

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _outputs(out: Path) -> dict[str, Any]:
    """The JSON result, after checking its markdown, CSV and PNG companions exist and parse."""
    data = json.loads(out.read_text())
    assert out.with_suffix(".md").read_text().startswith("## ")
    with out.with_suffix(".csv").open(newline="") as f:
        assert list(csv.DictReader(f)), f"{out.with_suffix('.csv')} has no rows"
    pngs = sorted(out.parent.glob(f"{out.stem}*.png"))
    assert pngs, f"no plot beside {out}"
    assert all(p.read_bytes().startswith(PNG_MAGIC) for p in pngs)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder with every benchmark at toy sizes: two-cell notebook (overhead alone), demo (compare, which
    also writes the overhead of its plain and monitored runs), 6 MB of arrays."""
    folder = tmp_path_factory.mktemp("bench-results")
    assert main(["--out-dir", str(folder), "scalability", "--sizes", "60", "200", "--repeat", "2"]) == 0
    throughput.run(folder / "throughput.json", quick=True, timeout=120, nbytes=6 * 2**20)
    tiny = folder / "tiny.ipynb"
    cells: list[dict[str, object]] = [
        {"cell_type": "code", "metadata": {}, "source": src, "outputs": [], "execution_count": None}
        for src in ("xs = list(range(1000))", "total = sum(xs)")]
    tiny.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 4, "metadata": {}, "cells": cells}))
    overhead.run([tiny], folder / "solo" / "overhead.json", quick=True, timeout=120)
    compare.run([DEMO], folder / "compare.json", quick=True, timeout=120,
                methods=["nbmigrate", compare.RERUN, "PickleEach"], peers=False)
    assert main(["--out-dir", str(folder), "summary"]) == 0
    return folder


def test_help_lists_every_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    shown = capsys.readouterr().out
    for command in ("overhead", "correctness", "compare", "throughput", "scalability", "summary"):
        assert command in shown


def test_synthetic_history_is_consistent() -> None:
    history, groups = scalability.synthetic_history(300, max_variables=120)
    assert len(history.executions) == 300
    assert len(history.live) <= 120
    grouped = [n for g in groups for n in g.names]
    assert sorted(grouped) == sorted(history.live)  # every live name in exactly one group
    for ce in history.executions:
        assert all(v < ce.index for v in ce.reads.values())  # versions point backwards
    assert any(len(g.names) > 1 for g in groups)  # co-variable groups exist
    assert any(len(ce.reads) >= 8 for ce in history.executions)  # fan-in exists


@pytest.mark.kernel
def test_scalability_outputs(results: Path) -> None:
    data = _outputs(results / "scalability.json")
    assert [p["executions"] for p in data["points"]] == [60, 200]
    assert all(p["graph_bytes"] > 0 and p["plan_ms_median"] > 0 for p in data["points"])
    assert data["targets"] == []  # neither 2,000 nor 10,000 was measured


@pytest.mark.kernel
def test_throughput_stores_and_verifies_the_arrays(results: Path) -> None:
    data = _outputs(results / "throughput.json")
    assert data["checkpoint"]["replay_cells"] == []
    assert data["checkpoint"]["written_bytes"] >= sum(data["array_bytes"]) == 6 * 2**20
    assert data["restore"]["loaded_bytes"] >= sum(data["array_bytes"])
    assert data["restore"]["verified"] >= len(data["array_bytes"])
    assert data["raw"]["write_bps"] > 0 and data["raw"]["read_bps"] > 0
    assert isinstance(data["target"]["met"], bool)


@pytest.mark.kernel
def test_overhead_outputs(results: Path) -> None:
    data = _outputs(results / "solo" / "overhead.json")
    assert [r["notebook"] for r in data["notebooks"]] == ["tiny.ipynb"]
    assert data["notebooks"][0]["complete"]
    assert data["notebooks"][0]["hooks_seconds"] > 0  # the hooks wrap the extension's callbacks


@pytest.mark.kernel
def test_compare_outputs(results: Path) -> None:
    data = _outputs(results / "compare.json")
    rows = {r["method"]: r for r in data["rows"]}
    assert rows["nbmigrate"]["status"] == "ok"
    assert compare.RERUN in rows
    # The demo's live generator cannot be pickled: PickleEach skips it and is reported as such, not timed as ok.
    assert rows["PickleEach"]["status"] == "INCORRECT"
    assert any("gen" in d for d in rows["PickleEach"]["differences"])


@pytest.mark.kernel
def test_compare_measures_overhead_in_its_source_runs(results: Path) -> None:
    data = _outputs(results / "overhead.json")
    assert data["settings"]["source"] == "compare"
    (record,) = data["notebooks"]
    assert record["notebook"] == "demo.ipynb" and record["complete"]
    assert record["monitored"]["monitored"] and not record["plain"]["monitored"]
    assert record["hooks_seconds"] > 0
    assert len(record["plain"]["hook_seconds"]) == record["cells"]  # wrapped there too (around nothing)


@pytest.mark.kernel
def test_summary_lists_every_target(results: Path) -> None:
    md = (results / "summary.md").read_text()
    assert md == summary.render(results)
    for target in ("migration time", "restore time", "runtime median", "runtime worst", "peak memory",
                   "checkpoint throughput", "plan time < 50 ms at 2,000", "plan time < 300 ms at 10,000"):
        assert target in md, target
    assert "size not measured" in md  # toy scalability sizes are not passed off as the targets
    assert "CPU:" in md and "Python" in md and "numpy" in md
