"""The bench (bench/, `make bench`) runs end to end in its quick mode: a markdown table with every
figure and JSON with numbers. No timing is asserted: the bench measures, it does not judge."""

import json
import numbers
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIGURES = [
    "protocol floor",
    "trivial cell round trip",
    "10-command cell",
    "start to first reply",
    "first streamed line",
    "output throughput",
    "kernel memory under flood",
    "`%session create`",
    "3 sessions",
    "isolation cost",
    "2 notebooks × 10 cells at once",
    "download through the sandbox's network",
]
PEERS = {"sandbox", "bash", "python3-bang", "python3-bash-magic", "floor"}


def leaves(value):
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in leaves(v)]
    return [value]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "latest.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=280,
    )
    return result, out


@pytest.mark.timeout(300)
def test_quick_bench_prints_a_table_of_every_figure(quick_run):
    result, _ = quick_run
    assert result.returncode == 0, result.stderr
    table = [line for line in result.stdout.splitlines() if line.startswith("|")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header[0] == "figure" and "sandbox" in header and "floor" in header
    assert [line.split("|")[1].strip() for line in table[2:]] == FIGURES
    assert all(len(line.strip("|").split("|")) == len(header) for line in table)


@pytest.mark.timeout(300)
def test_quick_bench_writes_json_with_numbers(quick_run):
    result, out = quick_run
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    assert {"nproc", "cpu", "memory_bytes", "kernel", "python"} <= set(doc["machine"])
    assert [f["figure"] for f in doc["figures"]] == FIGURES
    figures = {f["figure"]: f["values"] for f in doc["figures"]}
    for peer in ("sandbox", "floor"):
        assert isinstance(figures["trivial cell round trip"][peer]["median_ms"], numbers.Real)
        assert isinstance(figures["start to first reply"][peer]["median_ms"], numbers.Real)
    for figure, values in figures.items():
        if figure != "protocol floor":
            assert any(isinstance(v, numbers.Real) for v in leaves(values["sandbox"])), figure
    assert isinstance(figures["protocol floor"]["floor"]["median_ms"], numbers.Real)


@pytest.mark.timeout(300)
def test_quick_bench_runs_every_peer(quick_run):
    # `make test` installs bash_kernel and ipykernel (make bench-peers): a run that skipped a peer
    # would compare nothing.
    result, out = quick_run
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    assert set(doc["peers"]) == PEERS and doc["skipped"] == {}, doc["skipped"]
    assert "skipped:" not in result.stdout
    figures = {f["figure"]: f["values"] for f in doc["figures"]}
    for peer in PEERS - {"floor"}:
        assert isinstance(figures["trivial cell round trip"][peer]["median_ms"], numbers.Real), peer
