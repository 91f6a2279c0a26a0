"""The bench's output: a markdown report for people, a JSON file for tools."""

import dataclasses
import datetime
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

DEFINITIONS = [
    "round trip: from sending execute_request to having both its execute_reply (shell) and its "
    "idle status (iopub), the whole cost a user waits for",
    "start to first reply: KernelManager.start_kernel until the execute_reply of a trivial cell "
    "sent as soon as the client's channels are open (no kernel_info wait)",
    "first streamed line and output throughput: from sending execute_request to the first / last "
    "stream message; bytes are the UTF-8 bytes of the streams' text",
    "kernel memory: VmHWM of the kernel process (not its children), read after the flood cell",
    "kernels run interleaved: each round measures every kernel once, in an order rotated every round",
    "targets: three are ratios against kernels of this same run (trivial cell, 10-command cell, start to "
    "first reply); four are absolute times or sizes (first streamed line, output throughput, kernel memory, "
    "`%session create`), which hold for a machine like this one, not for every machine",
]
PACKAGES = ("sandbox-kernel", "bash_kernel", "ipykernel", "jupyter_client", "pyzmq")
ROOT = Path(__file__).resolve().parent.parent


def source():
    """Which sandbox-kernel was measured: the checkout's commit, and whether the kernel's files
    differ from it (`make bench` installs them from the working tree)."""
    # GIT_OPTIONAL_LOCKS=0: only read, never refresh the index of a checkout others work in.
    git = ["git", "-C", str(ROOT)]
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, env=env)
        diff = subprocess.run([*git, "diff", "--quiet", "HEAD", "--", "sandbox_kernel", "kernelspec"], env=env)
    except OSError:
        return "not a git checkout"
    if head.returncode != 0:
        return "not a git checkout"
    return f"git {head.stdout.strip()}" + (" with uncommitted changes to the kernel" if diff.returncode == 1 else "")


def machine():
    info = {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": _first_value("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "memory_bytes": int(_first_value("/proc/meminfo", "MemTotal").split()[0]) * 1024,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": {},
    }
    for name in PACKAGES:
        try:
            info["packages"][name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return info


def _first_value(path, key):
    for line in Path(path).read_text().splitlines():
        name, _, value = line.partition(":")
        if name.strip() == key:
            return value.strip()
    return None


def markdown(*, date, machine, source, command, plan, peers, skipped, rows):
    m = machine
    lines = [
        f"# sandbox-kernel bench, {date}",
        "",
        f"- machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_bytes'] / (1 << 30):.1f} GiB, "
        f"Linux {m['kernel']}, Python {m['python']}",
        f"- packages: {', '.join(f'{k} {v}' for k, v in m['packages'].items())}",
        f"- sandbox-kernel source: {source}",
        f"- command: `{command}`",
        f"- plan: {plan.name}"
        + (" (a smoke run: few iterations, small output; its figures are not for comparison)" if plan.name == "quick" else ""),
        *(f"- {d}" for d in DEFINITIONS),
        *(f"- skipped: {key}: {why}" for key, why in skipped.items()),
        "",
        "| figure | " + " | ".join(p.title for p in peers) + " | sandbox target | sandbox vs target |",
        "|---" * (len(peers) + 3) + "|",
    ]
    for row in rows:
        cells = [row.cells.get(p.key, "—") for p in peers]
        lines.append(f"| {row.figure} | " + " | ".join(cells) + f" | {row.target or '—'} | {row.verdict or '—'} |")
    return "\n".join(lines) + "\n"


def write_json(path, *, date, machine, source, command, plan, peers, skipped, rows):
    document = {
        "date": date,
        "machine": machine,
        "source": source,
        "command": command,
        "plan": dataclasses.asdict(plan),
        "definitions": DEFINITIONS,
        "peers": {p.key: {"title": p.title, "kernel": p.kernel, "options": list(p.options)} for p in peers},
        "skipped": skipped,
        "figures": [
            {"figure": r.figure, "target": r.target, "verdict": r.verdict, "values": r.data, "table": r.cells} for r in rows
        ],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1) + "\n")


def now():
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")
