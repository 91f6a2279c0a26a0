"""Every example notebook runs headless with nbclient and shows what it promises."""

import shutil
from pathlib import Path

import nbformat
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
