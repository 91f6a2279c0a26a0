"""Every example notebook runs headless with nbclient and shows what it promises."""

import os
import shutil
import socket
import sys
from pathlib import Path

import nbformat
import papermill
from jupyter_core.paths import jupyter_runtime_dir
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def _execute(name, tmp_path):
    shutil.copy(NOTEBOOKS / name, tmp_path / name)
    nb = nbformat.read(tmp_path / name, as_version=4)
    NotebookClient(nb, timeout=60, resources={"metadata": {"path": str(tmp_path)}}).execute()
    return [c for c in nb.cells if c.cell_type == "code"]


def _text(cell, name="stdout"):
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == name)


def test_quickstart_runs_and_shows_state_streaming_status_jobs_and_display(tmp_path):
    cells = _execute("quickstart.ipynb", tmp_path)
    assert _text(cells[1]) == "quickstart-demo\nHELLO FROM THE LAST CELL\n"
    assert _text(cells[2]) == "step 1\nstep 2\nstep 3\n"
    assert _text(cells[2], "stderr") == "done\n"
    assert [(o.ename, o.evalue) for o in cells[3].outputs if o.output_type == "error"] == [("ExitCode", "exit status 1")]
    assert _text(cells[4]) == "the last cell exited with 1\n"
    assert "Running" in _text(cells[5]) and _text(cells[6]) == "stopped\n"
    assert cells[7].outputs[0].data["text/html"].startswith('<img src="data:image/svg+xml;base64,')
    assert not (tmp_path / "quickstart-demo").exists()


def test_sessions_notebook_shows_contexts_a_shared_loopback_list_restart_and_delete(tmp_path):
    cells = _execute("sessions.ipynb", tmp_path)
    assert _text(cells[2]) == "production in build\n"
    assert _text(cells[3]) == f"default: NODE_ENV=unset, in {tmp_path.name}\n"
    assert _text(cells[6]) == "<p>hello from web</p>\n"
    listing = cells[7].outputs[0].data["text/plain"]
    rows = {row[0]: row for row in (line.lstrip("* ").split() for line in listing.splitlines()[1:])}
    assert set(rows) == {"default", "build", "web"}, listing
    assert listing.splitlines()[1].startswith("*  default")
    assert rows["build"][1:4] == [str(tmp_path / "build"), "idle", "0"]
    assert rows["web"][3] == "1", listing  # its server, a background job
    assert _text(cells[8]) == "now in build, after the compiled step\n"
    assert _text(cells[9]).endswith("NODE_ENV=production, BUILD_STEP=gone\n")
    assert _text(cells[10]) == "web is gone, its server with it\n"
    assert not (tmp_path / "build").exists()


def test_isolation_notebook_shows_a_cell_sees_nothing_of_the_control_plane(tmp_path):
    # Run as its markdown says: papermill, the host's runtime directory as the parameter. A
    # connection file of the kind a Jupyter server's kernels have is there for the run.
    runtime = jupyter_runtime_dir()
    os.makedirs(runtime, exist_ok=True)
    decoy = Path(runtime, f"kernel-isolation-notebook-{os.getpid()}.json")
    decoy.write_text("{}")
    port = socket.socket()
    try:
        # Something listening on the host's 8888, as the Jupyter server would (if it is free).
        port.bind(("127.0.0.1", 8888))
        port.listen()
    except OSError:
        pass
    try:
        shutil.copy(NOTEBOOKS / "isolation.ipynb", tmp_path / "in.ipynb")
        papermill.execute_notebook(str(tmp_path / "in.ipynb"), str(tmp_path / "out.ipynb"), kernel_name="sandbox",
                                   parameters={"runtime_dir": runtime}, cwd=str(tmp_path), progress_bar=False)
    finally:
        decoy.unlink()
        port.close()
    cells = [c for c in nbformat.read(tmp_path / "out.ipynb", as_version=4).cells if c.cell_type == "code"]
    by_start = {c.source.split()[0]: c for c in cells if c.source}
    everything = "".join(_text(c) + _text(c, "stderr") for c in cells)

    ps = _text(by_start["ps"]).splitlines()
    assert ps[0].split() == ["PID", "COMMAND"] and ps[1].split()[0] == "1" and len(ps) <= 5, ps
    for word in ("jupyter", "papermill", "ipykernel", "sandbox_kernel -f"):
        assert word not in _text(by_start["ps"]), ps

    environ = _text(by_start["tr"]).splitlines()
    assert environ[0] == "PID 1's environment: not readable"
    names = set(environ[1].split())
    assert "PATH" in names and not {n for n in names if n.startswith(("JPY", "JUPYTER")) or "TOKEN" in n or "KEY" in n}

    assert _text(by_start["ls"]).splitlines()[-1] == "connection files seen: 0"
    assert decoy.name not in everything

    home = _text(by_start["echo"]).splitlines()
    assert home[0].startswith("HOME=")
    # Of the host's home, at most the directory the kernel's own Python lives in.
    host_home = Path.home()
    own = {p.relative_to(host_home).parts[0] for p in map(Path, (os.path.realpath(sys.executable), sys.prefix))
           if p.is_relative_to(host_home)}
    assert set(home[1:]) & set(os.listdir(host_home)) <= own, home

    assert _text(by_start["if"]) == "port 8888: unreachable\n"
    files = _text(by_start["cat"]).splitlines()
    assert files[0].startswith("cat: /etc/shadow:") and files[1].endswith(("Read-only file system", "Permission denied")), files
    assert files[2:] == ["written by the sandbox"]
    assert _text(by_start["%sandbox"]).startswith("isolation:       isolated")
