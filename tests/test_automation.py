"""Headless use through the real tools, as CI jobs and agents run notebooks: `jupyter execute`,
nbclient and papermill start the installed 'sandbox' kernelspec and execute notebook files."""

import asyncio
import base64
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import nbformat
import pytest
from jupyter_client import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError
from nbformat.v4 import new_code_cell, new_notebook

from harness import KERNEL_NAME

BIN = os.path.dirname(sys.executable)
KERNELSPEC = {"name": KERNEL_NAME, "display_name": "Bash (sandbox)", "language": "bash"}


def notebook(*sources, tags=None):
    cells = [new_code_cell(s) for s in sources]
    for i, t in (tags or {}).items():
        cells[i].metadata["tags"] = [t]
    return new_notebook(cells=cells, metadata={"kernelspec": KERNELSPEC})


def write(path, nb):
    nbformat.write(nb, path)
    return path


def outputs(cell):
    return [dict(o) for o in cell.outputs]


def stdout(cell):
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def errors(cell):
    return [(o.ename, o.evalue) for o in cell.outputs if o.output_type == "error"]


def run(nb, cwd, **options):
    client = NotebookClient(nb, kernel_name=KERNEL_NAME, resources={"metadata": {"path": str(cwd)}}, **options)
    client.execute()
    return [c for c in nb.cells if c.cell_type == "code"]


# -- jupyter execute ---------------------------------------------------------------------------

def jupyter_execute(path, *options):
    return subprocess.run([f"{BIN}/jupyter", "execute", f"--kernel_name={KERNEL_NAME}", *options, str(path)],
                          capture_output=True, text=True, timeout=120)


def test_jupyter_execute_exits_0_when_every_cell_passes_and_non_zero_when_one_fails(tmp_path):
    ok = write(tmp_path / "ok.ipynb", notebook("x=5", "echo $((x * 2)) > result"))
    r = jupyter_execute(ok)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "result").read_text() == "10\n"  # cells run in the notebook's directory

    failing = write(tmp_path / "failing.ipynb", notebook("echo one > one", "false", "echo three > three"))
    r = jupyter_execute(failing)
    assert r.returncode != 0
    assert "ExitCode" in r.stderr and "exit status 1" in r.stderr
    assert (tmp_path / "one").exists() and not (tmp_path / "three").exists()


def test_jupyter_execute_allow_errors_records_the_error_and_runs_the_rest(tmp_path):
    path = write(tmp_path / "nb.ipynb", notebook("x=5", "ls /no/such/dir", "echo x is $x, last status $?"))
    r = jupyter_execute(path, "--allow-errors", "--inplace")
    assert r.returncode == 0, r.stderr
    cells = nbformat.read(path, as_version=4).cells
    assert errors(cells[1]) == [("ExitCode", "exit status 2")]
    assert "No such file or directory" in "".join(o.get("text", "") for o in cells[1].outputs)
    assert stdout(cells[2]) == "x is 5, last status 2\n"


# -- nbclient ----------------------------------------------------------------------------------

def test_nbclient_timeout_interrupts_the_cell_and_the_next_cells_keep_the_session(tmp_path):
    nb = notebook("x=5; cd /tmp", "echo before; sleep 30; echo never", "echo x=$x in $PWD")
    began = time.monotonic()
    cells = run(nb, tmp_path, timeout=2, interrupt_on_timeout=True, allow_errors=True)
    assert time.monotonic() - began < 15
    # The interrupt reached the cell through the kernel: what it printed stays, the rest never ran.
    assert stdout(cells[1]) == "before\n"
    assert [e for e, _ in errors(cells[1])] == ["Interrupted"]
    assert stdout(cells[2]) == "x=5 in /tmp\n"


def test_nbclient_timeout_without_interrupt_raises_as_for_any_kernel(tmp_path):
    began = time.monotonic()
    with pytest.raises(CellTimeoutError):
        run(notebook("sleep 30"), tmp_path, timeout=2)
    assert time.monotonic() - began < 15


def test_a_cell_reading_stdin_gets_end_of_file_at_once(tmp_path):
    began = time.monotonic()
    cells = run(notebook('read -r line; echo "read status $?"; cat; echo "cat status $?"', "read -r x"), tmp_path,
                timeout=10, allow_errors=True)
    assert time.monotonic() - began < 10
    assert stdout(cells[0]) == "read status 1\ncat status 0\n"
    assert errors(cells[1]) == [("ExitCode", "exit status 1")]


def test_outputs_are_the_bytes_the_cells_printed_and_replies_name_the_session(tmp_path):
    svg = '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>'
    nb = notebook(
        "printf 'no newline'",
        "printf 'x\\n\\n\\n'; printf 'to stderr\\n' >&2",
        "printf 'a\\rb \\033[31mred\\033[0m\\t\\xc3\\xa9 \\xe2\\x82\\xac\\n'",
        f"printf '%s' '{svg}' | display --mime image/svg+xml",
        "%session create other --env WHO=other",
        "%%session other\necho $WHO",
        "echo back in default",
    )
    replies = []
    cells = run(nb, tmp_path, timeout=30,
                on_cell_executed=lambda cell, cell_index, execute_reply: replies.append(execute_reply))
    assert outputs(cells[0]) == [{"output_type": "stream", "name": "stdout", "text": "no newline"}]
    assert sorted(outputs(cells[1]), key=lambda o: o["name"]) == [
        {"output_type": "stream", "name": "stderr", "text": "to stderr\n"},
        {"output_type": "stream", "name": "stdout", "text": "x\n\n\n"}]
    assert outputs(cells[2]) == [{"output_type": "stream", "name": "stdout", "text": "a\rb \x1b[31mred\x1b[0m\té €\n"}]
    # An SVG reaches the notebook as an image, which a browser never runs script of (rich_output.py).
    svg_image = f'<img src="data:image/svg+xml;base64,{base64.b64encode(svg.encode()).decode()}" alt="SVG image">'
    assert outputs(cells[3]) == [{"output_type": "display_data", "metadata": {}, "data": {"text/html": svg_image}}]
    assert stdout(cells[5]) == "other\n" and stdout(cells[6]) == "back in default\n"
    assert [r["metadata"]["sandbox"]["session"] for r in replies] == ["default"] * 5 + ["other", "default"]
    assert all(r["content"]["status"] == "ok" for r in replies)


def test_a_background_job_keeps_its_later_output_and_never_changes_another_cells_status(tmp_path):
    nb = notebook(
        "(for i in 1 2 3; do sleep 0.2; echo tick $i; done; echo job-err >&2; exit 7) &",
        "sleep 1.5; echo second done",
        "echo third: $?",
    )
    cells = run(nb, tmp_path, timeout=30)
    assert outputs(cells[0]) == []
    # Printed while the second cell ran: its output, in order; the job's exit 7 is nobody's status.
    assert stdout(cells[1]) == "tick 1\ntick 2\ntick 3\nsecond done\n"
    assert [o["text"] for o in outputs(cells[1]) if o["name"] == "stderr"] == ["job-err\n"]
    assert errors(cells[1]) == [] and stdout(cells[2]) == "third: 0\n"


def test_a_background_job_printing_between_cells_is_not_lost(new_kernel):
    # Nothing runs when the job prints: the output still goes out on IOPub (for a frontend,
    # with the parent of the last request), and the next cell's status is its own.
    k = new_kernel()
    k.run("(sleep 0.3; echo late; exit 4) &")
    seen = []
    deadline = time.monotonic() + 5
    while "late\n" not in seen and time.monotonic() < deadline:
        try:
            msg = k.kc.get_iopub_msg(timeout=0.2)
        except Exception:
            continue
        if msg["msg_type"] == "stream":
            seen.append(msg["content"]["text"])
    assert seen == ["late\n"]
    r = k.run("echo next")
    assert r.status == "ok" and r.stdout == "next\n"


# -- papermill ---------------------------------------------------------------------------------

AWKWARD = {
    "spaced": "two  words  ",
    "quoted": "it's \"quoted\" \\ back",
    "dollar": "$HOME ${PATH} $(touch pwned-dollar)",
    "backticks": "`touch pwned-backtick`",
    "lines": "line 1\nline 2; touch pwned-newline\n",
}


def test_papermill_parameters_arrive_as_bash_assignments_intact_and_never_run(tmp_path):
    show = "; ".join(f"printf '%s=[%s]\\n' {n} \"${n}\"" for n in ["count", *AWKWARD])
    source = write(tmp_path / "in.ipynb", notebook("count=1\nspaced=default", show, tags={0: "parameters"}))
    params = [a for n, v in AWKWARD.items() for a in ("-p", n, v)]
    r = subprocess.run([f"{BIN}/papermill", str(source), str(tmp_path / "out.ipynb"), "-k", KERNEL_NAME,
                        "--cwd", str(tmp_path), "-p", "count", "3", *params], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    cells = nbformat.read(tmp_path / "out.ipynb", as_version=4).cells
    injected = cells[1]
    assert injected.metadata.tags == ["injected-parameters"]
    assert injected.source.splitlines()[:2] == ["# Parameters", "count=3"]
    assert stdout(cells[2]) == "count=[3]\n" + "".join(f"{n}=[{v}]\n" for n, v in AWKWARD.items())
    assert not list(tmp_path.glob("pwned*"))


# -- many kernels --------------------------------------------------------------------------------

FRESH_KERNELS = 50
AT_ONCE = 5


def first_answer(n, cwd):
    """A fresh kernel, sent an execute_request the moment it reports ready: its answer."""
    # IPC sockets: with TCP, kernels started side by side can race for the same free port.
    km = KernelManager(kernel_name=KERNEL_NAME, transport="ipc", ip=str(cwd / f"kernel-{n}"))
    km.start_kernel(cwd=str(cwd))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        out = []
        reply = kc.execute_interactive(f"echo kernel {n}", timeout=30,
                                       output_hook=lambda m: out.append(m["content"].get("text", "")))
        return reply["content"]["status"], "".join(out)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.mark.timeout(300)
def test_fifty_fresh_kernels_each_answer_the_request_sent_the_moment_they_are_ready(tmp_path):
    # ipykernel 7 has dropped requests sent right after start (ipykernel issue 1554). A few at a
    # time: starting is what costs, and 2 cores are shared.
    with ThreadPoolExecutor(AT_ONCE) as pool:
        answers = list(pool.map(lambda n: first_answer(n, tmp_path), range(FRESH_KERNELS)))
    assert answers == [("ok", f"kernel {n}\n") for n in range(FRESH_KERNELS)]


NOTEBOOKS = 4
CELLS = 30


def busy_notebook(k, cells, root):
    """Notebook k of a concurrent run: output, sessions and a background job, every cell's output
    known in advance; what it looks for of the others must not be there."""
    others = " ".join(f"{root}/nb{j}" for j in range(NOTEBOOKS) if j != k)
    sources, expected = [], []

    def cell(source, out):
        sources.append(source)
        expected.append(out)

    cell(f"%session create side --env NB={k}", "")
    cell(f"sleep {1000 + k} & echo nb{k} > mark", "")
    n = 2
    while n < cells - 2:
        cell(f"seq {k * 1000 + n} {k * 1000 + n + 50} | tail -n 1", f"{k * 1000 + n + 50}\n")
        cell(f"%%session side\necho side of $NB: {n}", f"side of {k}: {n}\n")
        n += 2
    cell(f"pgrep -f 'sleep 100[0-9]' | wc -l; pgrep -fx 'sleep {1000 + k}' >/dev/null && echo mine", "1\nmine\n")
    cell(f"cat mark; for d in {others}; do test -e $d/mark && echo sees $d; done; true", f"nb{k}\n")
    return sources, expected


def test_concurrent_notebooks_get_their_own_outputs_processes_and_files(tmp_path):
    dirs, jobs = [], []
    for k in range(NOTEBOOKS):
        d = tmp_path / f"nb{k}"
        d.mkdir()
        dirs.append(d)
        sources, expected = busy_notebook(k, CELLS, tmp_path)
        jobs.append((notebook(*sources), expected, d))

    async def all_at_once():
        clients = [NotebookClient(nb, kernel_name=KERNEL_NAME, timeout=60, resources={"metadata": {"path": str(d)}})
                   for nb, _, d in jobs]
        await asyncio.gather(*(c.async_execute() for c in clients))

    asyncio.run(all_at_once())
    for nb, expected, _ in jobs:
        assert [stdout(c) for c in nb.cells] == expected
        assert all(errors(c) == [] for c in nb.cells)
