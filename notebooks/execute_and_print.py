"""Execute a notebook headless with its kernel and print each cell with its outputs (make demo)."""

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def show(path):
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=60, resources={"metadata": {"path": str(Path(path).parent)}}).execute()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        print("\n".join(f"$ {line}" for line in cell.source.splitlines()))
        for out in cell.outputs:
            if out.output_type == "stream":
                print("".join(f"  {out.name}| {line}\n" for line in out.text.splitlines()), end="")
            elif out.output_type == "error":
                print(f"  error| {out.ename}: {out.evalue}")
            else:
                print(f"  {out.output_type}| {', '.join(out.get('data', {}))}")
        print()


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        show(arg)
