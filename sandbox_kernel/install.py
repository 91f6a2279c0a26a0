"""Installing the kernelspec from kernelspec/ (shipped in the package as sandbox_kernel.kernelspec)."""

import argparse
import json
import os
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from jupyter_client.kernelspec import KernelSpecManager

KERNEL_NAME = "sandbox"
# For Enterprise Gateway: its DistributedProcessProxy runs the argv on one of its remote hosts
# (over SSH, or at once on its own host), with the launcher's part of the contract filled in.
GATEWAY_KERNEL_NAME = "sandbox_distributed"
GATEWAY_SPEC = {
    "display_name": "Bash (sandbox, distributed)",
    "argv": ["{python}", "-P", "-m", "sandbox_kernel", "launch", "--kernel-id", "{kernel_id}",
             "--response-address", "{response_address}", "--public-key", "{public_key}", "--port-range", "{port_range}"],
    "metadata": {"debugger": False, "process_proxy": {
        "class_name": "enterprise_gateway.services.processproxies.distributed.DistributedProcessProxy"}},
}


def _kernelspec_dir():
    """kernelspec/ as installed (sandbox_kernel.kernelspec), or beside the package in a checkout."""
    try:
        return resources.files("sandbox_kernel.kernelspec")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "kernelspec"


def main(argv):
    parser = argparse.ArgumentParser(prog="python -m sandbox_kernel install", description="Install the 'sandbox' kernelspec.")
    parser.add_argument("--enterprise-gateway", action="store_true",
                        help=f"install {GATEWAY_KERNEL_NAME!r} instead: the kernel on Enterprise Gateway's remote hosts "
                        "(its DistributedProcessProxy), started there by `python -m sandbox_kernel launch`")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="for this user (~/.local/share/jupyter)")
    where.add_argument("--sys-prefix", action="store_true", help="into this Python's prefix (a virtualenv)")
    where.add_argument("--prefix", help="into PREFIX/share/jupyter")
    args = parser.parse_args(argv)
    if not (args.user or args.sys_prefix or args.prefix):
        args.sys_prefix = sys.prefix != sys.base_prefix
        args.user = not args.sys_prefix
    prefix = sys.prefix if args.sys_prefix else args.prefix
    source = _kernelspec_dir()
    with tempfile.TemporaryDirectory() as tmp:
        for item in source.iterdir():
            if item.name.endswith((".png", ".svg")):
                shutil.copyfile(item, Path(tmp, item.name))
        spec = json.loads((source / "kernel.json").read_text())
        name = KERNEL_NAME
        if args.enterprise_gateway:
            spec.update(GATEWAY_SPEC)
            name = GATEWAY_KERNEL_NAME
        spec["argv"] = [sys.executable if a == "{python}" else a for a in spec["argv"]]
        Path(tmp, "kernel.json").write_text(json.dumps(spec, indent=1) + "\n")
        # Readable by every user: install_kernel_spec copies the modes (the temporary directory's
        # 0700) and makes missing parents (share/jupyter/kernels) under the umask.
        os.chmod(tmp, 0o755)
        for item in Path(tmp).iterdir():
            item.chmod(0o644)
        umask = os.umask(0o022)
        try:
            dest = KernelSpecManager().install_kernel_spec(tmp, name, user=args.user, prefix=prefix)
        finally:
            os.umask(umask)
    print(f"installed kernelspec {name!r} in {dest}")
    return 0
