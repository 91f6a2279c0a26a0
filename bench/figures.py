"""The figures. Each is one function bench -> [Row], listed in FIGURES in table order; it measures
every kernel it applies to in the same run, interleaved (see interleave), so that the ratios
compare kernels under the same machine conditions."""

import asyncio
import dataclasses
import shlex
import subprocess
import time
from pathlib import Path

import nbformat.v4
from nbclient import NotebookClient

from .client import CELL_TIMEOUT
from .numbers import fmt_bytes, fmt_time, median, ms, p95, seq_bytes
from .peers import SANDBOX, SANDBOX_ISOLATION_OFF
from .test_host import TestHost, Unavailable

TRUE = ["true"]
TEN_TRUES = ["true"] * 10
FIRST_LINE = ["echo a; sleep 1; echo b"]


@dataclasses.dataclass
class Row:
    figure: str
    cells: dict  # peer key -> what the table shows
    data: dict  # peer key -> {name: number} for the JSON
    target: str = ""  # what sandbox should achieve, as the issue states it
    verdict: str = ""  # how sandbox fares against the target in this run


def interleave(peers, counts, measure):
    """{peer: [measure(peer), ...]}, counts[peer] times each, round-robin: each round measures
    every peer once, starting one peer further each time, so that drift and order effects fall
    on all peers alike. A peer with fewer iterations has them spread over all the rounds."""
    samples = {p: [] for p in peers}
    rounds = max(counts.values(), default=0)
    for i in range(rounds):
        shift = i % len(peers)
        for peer in peers[shift:] + peers[:shift]:
            # With fewer samples than rounds: one in each round where i * count // rounds steps up.
            if (i + 1) * counts[peer] // rounds > i * counts[peer] // rounds:
                samples[peer].append(measure(peer))
    return samples


def pace(bench, kernels, cells, iterations):
    """Warm each kernel up on its cell; {peer: iterations}, fewer for a slow kernel."""
    plan = bench.plan
    counts = {}
    for peer, kernel in kernels.items():
        warm, began = [], time.perf_counter()
        while len(warm) < plan.warmup and (len(warm) < 2 or time.perf_counter() - began < plan.warmup_seconds):
            warm.append(kernel.run_ok(cells[peer]).round_trip)
        slow = median(warm) > plan.slow_cell
        counts[peer] = max(1, iterations // plan.slow_share) if slow else iterations
    return counts


def fewer_note(bench, n, iterations):
    return f", n={n}: >{fmt_time(bench.plan.slow_cell)} per cell" if n < iterations else ""


def ratio_verdict(ratio, limit, against):
    met = "met" if ratio <= limit else "MISSED"
    return f"{ratio:.2f}x {against}: {met}"


def time_to_first_reply(bench, peer):
    """Seconds from KernelManager.start_kernel to the first trivial cell's execute_reply. The
    cell is sent as soon as the channels are open, as a frontend that queues it would."""
    kernel = bench.kernel(peer)
    began = time.perf_counter()
    kernel.start()
    try:
        run = kernel.run(peer.cell(TRUE), timeout=CELL_TIMEOUT, until_idle=False)
        if run.reply_at is None:
            raise RuntimeError(f"kernel {peer.kernel!r} did not reply within {CELL_TIMEOUT} s of starting")
        return run.reply_at - began
    finally:
        kernel.stop()


# -- the figures ----------------------------------------------------------------------------------


def round_trips(bench):
    """Protocol floor and trivial cell: `true` (the floor ignores it) in every kernel."""
    peers = bench.peers
    kernels = bench.warm(peers)
    cells = {p: p.cell(TRUE) for p in peers}
    counts = pace(bench, kernels, cells, bench.plan.trivial)
    samples = interleave(peers, counts, lambda p: kernels[p].run_ok(cells[p]).round_trip)
    data = {p.key: {"median_ms": ms(median(s)), "p95_ms": ms(p95(s)), "n": len(s)} for p, s in samples.items()}
    cells_text = {
        p.key: f"{fmt_time(median(s))} (p95 {fmt_time(p95(s))}{fewer_note(bench, len(s), bench.plan.trivial)})"
        for p, s in samples.items()
    }
    floor = bench.peer("floor")
    floor_row = Row("protocol floor", {}, {}, target="(reference)")
    trivial_row = Row("trivial cell round trip", cells_text, data, target="≤ 1.5x the floor")
    if floor is not None:
        floor_row.cells[floor.key] = fmt_time(median(samples[floor]))
        floor_row.data[floor.key] = data[floor.key]
        if SANDBOX in samples:
            ratio = median(samples[SANDBOX]) / median(samples[floor])
            trivial_row.data[SANDBOX.key]["ratio_to_floor"] = round(ratio, 3)
            trivial_row.verdict = ratio_verdict(ratio, 1.5, "the floor")
    return [floor_row, trivial_row]


def ten_commands(bench):
    """Ten `true` lines in one cell, each paired with a one-line `true` cell run right before it."""
    peers = [p for p in bench.peers if p.runs_commands]
    kernels = bench.warm(peers)
    cells = {p: p.cell(TEN_TRUES) for p in peers}
    counts = pace(bench, kernels, cells, bench.plan.ten)

    def pair(peer):
        one = kernels[peer].run_ok(peer.cell(TRUE)).round_trip
        return one, kernels[peer].run_ok(cells[peer]).round_trip

    samples = interleave(peers, counts, pair)
    row = Row("10-command cell", {}, {}, target="≤ 2x the trivial cell")
    for peer, pairs in samples.items():
        ten = median([t for _one, t in pairs])
        ratio = ten / median([one for one, _t in pairs])
        row.data[peer.key] = {
            "median_ms": ms(ten), "p95_ms": ms(p95([t for _o, t in pairs])), "ratio_to_trivial": round(ratio, 3), "n": len(pairs)
        }
        row.cells[peer.key] = f"{fmt_time(ten)} ({ratio:.1f}x its trivial cell{fewer_note(bench, len(pairs), bench.plan.ten)})"
        if peer == SANDBOX:
            row.verdict = ratio_verdict(ratio, 2, "the trivial cell")
    return [row]


def start_up(bench):
    """A fresh kernel from start_kernel to its first execute_reply."""
    peers = bench.peers
    samples = interleave(peers, {p: bench.plan.startups for p in peers}, lambda p: time_to_first_reply(bench, p))
    row = Row("start to first reply", {}, {}, target="≤ ipykernel's (python3 `!true`)")
    for peer, s in samples.items():
        row.data[peer.key] = {"median_ms": ms(median(s)), "samples_ms": [ms(x) for x in s]}
        row.cells[peer.key] = fmt_time(median(s))
    ipykernel = bench.peer("python3-bang")
    if SANDBOX in samples and ipykernel is not None:
        row.verdict = ratio_verdict(median(samples[SANDBOX]) / median(samples[ipykernel]), 1, "ipykernel's")
    return [row]


def first_streamed_line(bench):
    """`echo a; sleep 1; echo b`: sending the request until the first stream message."""
    peers = [p for p in bench.peers if p.runs_commands]
    kernels = bench.warm(peers)
    counts = {p: bench.plan.first_line for p in peers}
    samples = interleave(peers, counts, lambda p: kernels[p].run_ok(p.cell(FIRST_LINE)).first_stream)
    row = Row("first streamed line", {}, {}, target="< 20 ms")
    for peer, s in samples.items():
        row.data[peer.key] = {"median_ms": ms(median(s)), "samples_ms": [ms(x) for x in s]}
        row.cells[peer.key] = fmt_time(median(s))
        if peer == SANDBOX:
            row.verdict = f"{fmt_time(median(s))}: {'met' if median(s) < 0.02 else 'MISSED'}"
    return [row]


def flood(bench):
    """`seq 1 N` in a fresh kernel: output throughput, and the kernel's peak memory meanwhile. A
    kernel that misses the deadline is stopped there and not run again."""
    plan = bench.plan
    peers = [p for p in bench.peers if p.runs_commands]
    expected = seq_bytes(plan.seq)
    runs = {p: [] for p in peers}
    for i in range(plan.flood_rounds):
        shift = i % len(peers)
        for peer in peers[shift:] + peers[:shift]:
            if all(r["finished"] for r in runs[peer]):
                runs[peer].append(flood_once(bench, peer))

    throughput = Row("output throughput", {}, {}, target=f"< 2 s, all {fmt_bytes(expected)}")
    memory = Row("kernel memory under flood", {}, {}, target="< 150 MB")
    for peer, results in runs.items():
        done = [r for r in results if r["finished"]]
        last = results[-1]
        throughput.data[peer.key] = {"runs": results, "expected_bytes": expected}
        if len(done) == len(results):
            seconds = median([r["last_byte_s"] for r in done])
            exact = "" if all(r["bytes"] == expected for r in done) else f" (expected {fmt_bytes(expected)})"
            throughput.cells[peer.key] = f"{fmt_time(seconds)}, {fmt_bytes(last['bytes'])}{exact} in {last['messages']} messages"
        else:
            throughput.cells[peer.key] = f"did not finish in {plan.deadline:g} s ({fmt_bytes(last['bytes'])} received)"
        peak = max(r["peak_rss"] for r in results)
        memory.data[peer.key] = {"peak_rss_bytes": peak, "rss_before_bytes": max(r["rss_before"] for r in results)}
        memory.cells[peer.key] = fmt_bytes(peak) + ("" if last["finished"] else " at the deadline")
        if peer == SANDBOX:
            all_bytes = all(r["finished"] and r["bytes"] == expected for r in results)
            seconds = max(r["last_byte_s"] or plan.deadline for r in results)
            met = "met" if all_bytes and seconds < 2 else "MISSED"
            throughput.verdict = f"slowest run {fmt_time(seconds)}, {'all bytes' if all_bytes else 'bytes MISSING'}: {met}"
            memory.verdict = f"{fmt_bytes(peak)}: {'met' if peak < 150_000_000 else 'MISSED'}"
    return [throughput, memory]


def flood_once(bench, peer):
    plan = bench.plan
    kernel = bench.started(peer)
    finished = False
    try:
        kernel.run_ok(peer.cell(TRUE))  # the sandbox starts its session here, not in the flood
        rss_before = kernel.peak_rss()
        run = kernel.run(peer.cell([f"seq 1 {plan.seq}"]), timeout=plan.deadline)
        finished = run.finished
        return {
            "finished": finished,
            "last_byte_s": round(run.last_stream, 4) if run.stream_messages else None,
            "bytes": run.stream_bytes,
            "messages": run.stream_messages,
            "peak_rss": kernel.peak_rss(),
            "rss_before": rss_before,
        }
    finally:
        kernel.stop(now=not finished)


def isolation_cost(bench):
    """The sandbox with its default isolation against --Sandbox.isolation=off: trivial cells and
    start-up, the two modes interleaved."""
    if bench.peer(SANDBOX.key) is None:
        return [Row("isolation cost", {}, {}, target="reported")]
    plan = bench.plan
    modes = [SANDBOX, SANDBOX_ISOLATION_OFF]
    kernels = bench.warm(modes)
    cells = {p: p.cell(TRUE) for p in modes}
    counts = pace(bench, kernels, cells, plan.isolation_trivial)
    trivial = interleave(modes, counts, lambda p: kernels[p].run_ok(cells[p]).round_trip)
    starts = interleave(modes, {p: plan.isolation_startups for p in modes}, lambda p: time_to_first_reply(bench, p))
    cell, cell_off = median(trivial[SANDBOX]), median(trivial[SANDBOX_ISOLATION_OFF])
    start, start_off = median(starts[SANDBOX]), median(starts[SANDBOX_ISOLATION_OFF])
    default = isolation_in_force(kernels[SANDBOX])
    text = (
        f"default: {default}; "
        f"`true` {fmt_time(cell)} vs {fmt_time(cell_off)} off ({(cell - cell_off) * 1000:+.2f} ms); "
        f"start-up {fmt_time(start)} vs {fmt_time(start_off)} off ({(start - start_off) * 1000:+.0f} ms)"
    )
    data = {
        "default_isolation": default,
        "trivial_median_ms": ms(cell),
        "trivial_off_median_ms": ms(cell_off),
        "startup_median_ms": ms(start),
        "startup_off_median_ms": ms(start_off),
        "n_trivial": len(trivial[SANDBOX]),
        "startup_samples_ms": [ms(x) for x in starts[SANDBOX]],
        "startup_off_samples_ms": [ms(x) for x in starts[SANDBOX_ISOLATION_OFF]],
    }
    return [Row("isolation cost", {SANDBOX.key: text}, {SANDBOX.key: data}, target="reported", verdict="reported")]


def isolation_in_force(kernel):
    """What the sandbox says it runs with: the isolation line of `%sandbox`."""
    run = kernel.run("%sandbox", timeout=CELL_TIMEOUT, keep_text=True)
    for line in "".join(run.text).splitlines():
        if line.startswith("isolation:"):
            return line.partition(":")[2].strip()
    return "not reported by %sandbox"


def session_create(bench):
    """`%session create` in a warm sandbox kernel: the magic's round trip, which includes starting
    the session's bash inside the sandbox and checking its cwd there."""
    kernel = bench.warm([SANDBOX])[SANDBOX]
    times = [kernel.run_ok(f"%session create create-{i}").round_trip for i in range(bench.plan.session_creates)]
    s = median(times)
    return [Row(
        "`%session create`",
        {SANDBOX.key: f"{fmt_time(s)} (p95 {fmt_time(p95(times))}, n={len(times)})"},
        {SANDBOX.key: {"median_ms": ms(s), "p95_ms": ms(p95(times)), "n": len(times)}},
        target="< 50 ms", verdict=f"{fmt_time(s)}: {'met' if s < 0.05 else 'MISSED'}",
    )]


def many_sessions(bench):
    """A fresh sandbox kernel gets N sessions, each runs a cell; the memory they add (PSS of the
    kernel and every process under it, so that shared pages are counted once) against what N
    idle bash processes started by the bench add."""
    n = bench.plan.sessions
    kernel = bench.started(SANDBOX)
    try:
        kernel.run_ok("true")
        before = tree_pss(kernel.pid)
        for i in range(n):
            kernel.run_ok(f"%session create many-{i}")
            if "".join(kernel.run_ok(f"%%session many-{i}\necho ${{PWD:+ok}}", keep_text=True).text) != "ok\n":
                raise RuntimeError(f"session many-{i} did not answer its cell")
        added = tree_pss(kernel.pid) - before
    finally:
        kernel.stop()
    bash = idle_bash_pss(n)
    per, per_bash = added / n, bash / n
    return [Row(
        f"{n} sessions",
        {SANDBOX.key: f"all {n} answered; +{fmt_bytes(added)} ({fmt_bytes(per)} each; an idle bash: {fmt_bytes(per_bash)})"},
        {SANDBOX.key: {"sessions": n, "added_pss_bytes": added, "per_session_bytes": round(per),
                       "idle_bash_bytes": round(per_bash)}},
        target="about one bash each", verdict=f"{per / per_bash:.1f}x an idle bash",
    )]


def tree_pss(pid):
    """Proportional set size of pid and all its descendants, in bytes."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            rollup = Path(f"/proc/{p}/smaps_rollup").read_text()
        except FileNotFoundError:
            continue  # ended meanwhile
        total += next(int(line.split()[1]) * 1024 for line in rollup.splitlines() if line.startswith("Pss:"))
    return total


def idle_bash_pss(n):
    """The PSS of n plain bash processes, started by the bench, waiting on a read."""
    bashes = [subprocess.Popen(["bash", "--norc", "--noprofile", "-c", "read -r _"], stdin=subprocess.PIPE) for _ in range(n)]
    try:
        time.sleep(0.5)
        return sum(tree_pss(b.pid) for b in bashes)
    finally:
        for b in bashes:
            b.stdin.close()
            b.wait()


def notebook_of(k, cells):
    """Notebook k of the concurrent run: output, a second session, background jobs (writing to a
    file of its directory) and a long-lived job; (sources, the stdout each cell must show)."""
    sources, expected = [f"%session create side --env NB={k}", f"sleep {9990 + k} &"], ["", ""]
    jobs = 0
    for i in range(2, cells - 1):
        kind = i % 4
        if kind == 0:
            sources.append(f"echo nb{k} cell {i}")
            expected.append(f"nb{k} cell {i}\n")
        elif kind == 1:
            sources.append(f"%%session side\necho side of $NB: {i}")
            expected.append(f"side of {k}: {i}\n")
        elif kind == 2:
            sources.append(f"seq {i} {i + 100} | tail -n 1")
            expected.append(f"{i + 100}\n")
        else:
            sources.append(f"(sleep 0.05; echo {i} >> jobs.log) &")
            expected.append("")
            jobs += 1
    # Its own jobs' lines, and of the long-lived jobs of all notebooks its own only.
    sources.append("sleep 0.2; wc -l < jobs.log; pgrep -f '^sleep 999[0-9]' | wc -l")
    expected.append(f"{jobs}\n1\n")
    return sources, expected


def concurrent_notebooks(bench):
    """N notebooks at once through nbclient (N kernels, N sandboxes), M cells each: the wall time
    from starting the kernels to the last cell, and whether every output was the right one."""
    n, cells = bench.plan.notebooks, bench.plan.notebook_cells
    runs = []
    for k in range(n):
        cwd = bench.root / f"notebook-{k}"
        cwd.mkdir()
        sources, expected = notebook_of(k, cells)
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in sources])
        runs.append((nb, expected, NotebookClient(nb, kernel_name=SANDBOX.kernel, timeout=60,
                                                    resources={"metadata": {"path": str(cwd)}})))

    async def all_at_once():
        await asyncio.gather(*(client.async_execute() for _, _, client in runs))

    began = time.perf_counter()
    asyncio.run(all_at_once())
    wall = time.perf_counter() - began
    wrong = sum(
        "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout") != want
        or any(o.output_type != "stream" for o in cell.outputs)
        for nb, expected, _ in runs for cell, want in zip(nb.cells, expected)
    )
    total = n * cells
    return [Row(
        f"{n} notebooks × {cells} cells at once",
        {SANDBOX.key: f"{fmt_time(wall)} wall ({total / wall:.0f} cells/s); {total - wrong} of {total} outputs right"},
        {SANDBOX.key: {"wall_ms": ms(wall), "cells": total, "wrong_outputs": wrong}},
        target="every output right, none in another notebook",
        verdict="met" if wrong == 0 else f"MISSED: {wrong} wrong",
    )]


def network_download(bench):
    """curl in a cell downloads from a host of the bench's own (test_host.py): the default
    private network (slirp4netns's NAT) against Sandbox.network=proxy (the kernel's proxy), and
    the same curl run on the host as the reference; the modes interleaved."""
    title, plan = "download through the sandbox's network", bench.plan
    if bench.peer(SANDBOX.key) is None:
        return [Row(title, {}, {}, target="reported")]
    try:
        host = TestHost(plan.download_bytes)
    except Unavailable as e:
        return [Row(title, {SANDBOX.key: f"not measured: {e}"}, {}, target="reported", verdict="not measured")]
    curl = f"curl -sS -o /dev/null -w '%{{time_total}}\\n' http://{host.address}:8080/"
    proxy = dataclasses.replace(SANDBOX, key="sandbox-proxy", title="sandbox (proxy)",
                                options=("--Sandbox.network=proxy", f"--Sandbox.allowed_hosts={host.address}:8080"))
    with host:
        modes = [SANDBOX, proxy]
        kernels = bench.warm(modes)
        samples = interleave(modes, {p: plan.downloads for p in modes},
                             lambda p: float("".join(kernels[p].run_ok(curl, keep_text=True).text)))
        direct = [float(subprocess.run(shlex.split(curl), capture_output=True, text=True, check=True).stdout)
                  for _ in range(plan.downloads)]
    rate = lambda seconds: f"{plan.download_bytes / median(seconds) / 1e6:.0f} MB/s"  # noqa: E731
    text = (f"{fmt_bytes(plan.download_bytes)} by curl, median of {plan.downloads}: private (slirp4netns) "
            f"{rate(samples[SANDBOX])}, proxy {rate(samples[proxy])}; curl on the host {rate(direct)}")
    data = {"bytes": plan.download_bytes, "private_median_ms": ms(median(samples[SANDBOX])),
            "proxy_median_ms": ms(median(samples[proxy])), "host_median_ms": ms(median(direct))}
    return [Row(title, {SANDBOX.key: text}, {SANDBOX.key: data}, target="reported", verdict="reported")]


FIGURES = [
    round_trips,
    ten_commands,
    start_up,
    first_streamed_line,
    flood,
    session_create,
    many_sessions,
    isolation_cost,
    concurrent_notebooks,
    network_download,
]
