"""Builds the JupyterLab extension (this directory) into labextension/, prebuilt for the wheel.

hatch-jupyter-builder calls build() while hatchling builds the sdist or the wheel (see
pyproject.toml); `make lab-extension` runs this file with the project venv's python. Nothing is
built while labextension/ is at least as new as every source, so a wheel built from the sdist
(which carries labextension/) needs no node, and neither does a re-install from a checkout."""

import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "labextension"
SOURCES = ["src", "style", "package.json", "package-lock.json", "tsconfig.json", "install.json"]
WITHOUT_NODE = (
    "sandbox-kernel: the JupyterLab extension was not built: node and npm are not on PATH. "
    "Install them (Debian: apt-get install nodejs npm) and retry, or install a wheel built by `make dist`; "
    "SKIP_JUPYTER_BUILDER=1 installs the kernel without the extension."
)


def _mtimes(path):
    if path.is_file():
        return [path.stat().st_mtime]
    return [Path(d, f).stat().st_mtime for d, _, files in os.walk(path) for f in files]


def _stale():
    if not all((OUTPUT / name).exists() for name in ("package.json", "install.json")):
        return True
    newest_source = max(m for name in SOURCES for m in _mtimes(HERE / name))
    return newest_source > min(_mtimes(OUTPUT))


def _run(*command):
    subprocess.run(command, cwd=HERE, check=True)


def build(target_name="wheel", version="standard"):
    """The build function of hatch-jupyter-builder (its two arguments are not needed here)."""
    if not _stale():
        return
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        # A SystemExit, as hatchling's own abort: pip shows this line, not a traceback.
        raise SystemExit(WITHOUT_NODE)
    installed = HERE / "node_modules" / ".package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < (HERE / "package-lock.json").stat().st_mtime:
        _run(npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
    import jupyterlab  # a build dependency (pyproject.toml); its staging dir is the core we build against

    core = Path(jupyterlab.__file__).parent / "staging"
    for old in ("lib", "labextension"):
        shutil.rmtree(HERE / old, ignore_errors=True)
    _run("node_modules/.bin/tsc")
    _run("node_modules/.bin/build-labextension", ".", "--core-path", str(core))
    # Beside package.json, it tells `jupyter labextension list` which Python package ships it.
    shutil.copy(HERE / "install.json", OUTPUT / "install.json")


if __name__ == "__main__":
    build()
