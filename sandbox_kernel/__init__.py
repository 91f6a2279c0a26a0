"""sandbox-kernel: a Jupyter kernel that runs every cell in a persistent bash session inside a sandbox."""

__version__ = "0.1.0"
