"""An interrupt stops the foreground command within a second and keeps everything else."""

import os
import signal
import threading
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError

from harness import process_tree

INTERRUPT_AT = 0.5


@pytest.mark.parametrize(
    "cell, how",
    [
        ("echo start; sleep 30; echo not reached", "the cell was interrupted"),
        ("slow() { sleep 30; }; for i in 1 2 3; do slow; echo not reached; done", "the cell was interrupted"),
        ("while :; do :; done", "the cell was interrupted"),
        # These print "ready" once they ignore the signals: on a slow machine, python takes longer
        # than INTERRUPT_AT to start.
        (
            "python3 -c 'import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); print(\"ready\", flush=True); time.sleep(30)'; echo not reached",
            "the cell was interrupted (it ignored SIGINT: ended with SIGTERM)",
        ),
        (
            "bash -c 'trap \"\" INT TERM; echo ready; sleep 30'; echo not reached",
            "the cell was interrupted (it ignored SIGINT and SIGTERM: killed)",
        ),
    ],
)
def test_interrupt_stops_the_foreground_command_within_a_second(kernel, cell, how):
    kernel.run("sleep 300 & KEEP=kept; cd /")
    if "ready" in cell:
        r = kernel.run(cell, interrupt_on="ready")
    else:
        r = kernel.run(cell, interrupt_after=INTERRUPT_AT)
    assert (r.status, r.ename, r.evalue) == ("error", "Interrupted", how)
    assert r.elapsed < r.interrupted_at + 1.0
    assert "not reached" not in r.stdout
    after = kernel.run("echo $? $KEEP $PWD; jobs")
    assert after.stdout.startswith("130 kept /\n[1]+  Running")
    kernel.run(f"kill %1; wait; cd {kernel.cwd}")


def test_interrupt_while_waiting_for_input_ends_the_cell(kernel):
    r = kernel.run("read -p 'never answered: ' x; echo not reached", interrupt_after=INTERRUPT_AT,
                   stdin=lambda prompt, password: time.sleep(3) or "late")
    assert r.ename == "Interrupted"
    assert kernel.run("echo next").stdout == "next\n"


def test_an_interrupt_the_sandbox_delivers_late_still_stops_its_own_cell_and_no_later_one(kernel):
    # On a busy machine the sandbox's supervisor, which delivers the SIGINT, may run well after the
    # kernel asked for it (here: stopped for 2 s around the interrupt), after the kernel's mark on
    # the data pipe has ended the cell's read. The signal must not hit the next cell, nor may the
    # escalation count from the request (it would restart the session).
    kernel.run("KEPT=kept")
    bash = [p for p in process_tree(kernel.pid) if Path(f"/proc/{p}/cmdline").read_bytes().startswith(b"bash\0")]
    assert len(bash) == 1, bash
    supervisor = int(Path(f"/proc/{bash[0]}/stat").read_text().rsplit(")", 1)[1].split()[1])

    def stall_the_supervisor():
        os.kill(supervisor, signal.SIGSTOP)
        threading.Timer(2, os.kill, (supervisor, signal.SIGCONT)).start()

    threading.Timer(INTERRUPT_AT - 0.1, stall_the_supervisor).start()
    r = kernel.run("read -p 'never answered: ' x; echo not reached", interrupt_after=INTERRUPT_AT,
                   stdin=lambda prompt, password: time.sleep(1) or "late")
    assert (r.ename, r.evalue, r.stdout) == ("Interrupted", "the cell was interrupted", "")
    after = kernel.run("sleep 3; echo next; echo $KEPT", timeout=30)
    assert (after.status, after.stdout) == ("ok", "next\nkept\n")


def test_a_sigint_between_cells_interrupts_no_cell(kernel):
    kernel.run("(sleep 0.5; kill -INT $$) & STAYED=yes")
    time.sleep(1.5)
    r = kernel.run("echo next $STAYED")
    assert (r.status, r.stdout) == ("ok", "next yes\n")


def test_nbclient_timeout_interrupts_and_the_notebook_goes_on(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in ("X=1", "sleep 60", "echo X=$X")]
    client = NotebookClient(nb, kernel_name="sandbox", timeout=2, interrupt_on_timeout=True,
                            allow_errors=True, resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    except CellTimeoutError:
        pytest.fail("nbclient had to give up instead of interrupting")
    assert nb.cells[1].outputs[-1]["ename"] == "Interrupted"
    assert nb.cells[2].outputs == [nbformat.v4.new_output("stream", name="stdout", text="X=1\n")]
