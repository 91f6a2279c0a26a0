"""The kernels compared: which kernelspec each is, and how each runs shell commands as a cell."""

import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path

FLOOR_KERNEL = Path(__file__).with_name("floor_kernel.py")
FLOOR_SPEC = "bench-floor"


def as_bash(lines):
    return "\n".join(lines)


def as_shell_escapes(lines):
    return "\n".join("!" + line for line in lines)


def as_bash_magic(lines):
    return "%%bash\n" + "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class Peer:
    key: str  # in the JSON
    title: str  # the table's column
    kernel: str  # kernelspec name
    cell: Callable[[list[str]], str]  # shell command lines -> the cell that runs them in this kernel
    runs_commands: bool = True  # the floor ignores its cells: output figures do not apply
    options: tuple = ()  # extra kernel arguments


SANDBOX = Peer("sandbox", "sandbox", "sandbox", as_bash)
SANDBOX_ISOLATION_OFF = dataclasses.replace(
    SANDBOX, key="sandbox-isolation-off", title="sandbox (isolation off)", options=("--Sandbox.isolation=off",)
)
FLOOR = Peer("floor", "floor", FLOOR_SPEC, as_bash, runs_commands=False)
PYTHON3 = "python3"

# Table order: ours first, the floor last.
PEERS = (
    SANDBOX,
    Peer("bash", "bash", "bash", as_bash),
    Peer("python3-bang", "python3 `!true`", PYTHON3, as_shell_escapes),
    Peer("python3-bash-magic", "python3 `%%bash`", PYTHON3, as_bash_magic),
    FLOOR,
)

WHY_MISSING = {
    "sandbox": "run `make venv` (it installs the 'sandbox' kernelspec)",
    "bash": "bash_kernel is not installed in this environment (`make bench` installs it)",
    PYTHON3: "ipykernel's 'python3' kernelspec is missing",
}


def write_floor_spec(kernels_dir):
    """The floor's kernelspec, in a directory of the bench's own: nothing is installed for it."""
    spec_dir = Path(kernels_dir, FLOOR_SPEC)
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-P", str(FLOOR_KERNEL), "-f", "{connection_file}"],
        "display_name": "bench floor (no-op)",
        "language": "text",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1) + "\n")
