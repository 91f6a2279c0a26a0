"""sandbox-kernel: a Jupyter kernel that runs every cell in a persistent bash session inside a sandbox."""

from importlib.metadata import version

# Set in one place, jupyter_extension/package.json, from which the build takes it (pyproject.toml).
__version__ = version("sandbox-kernel")
