"""python -m sandbox_kernel [install ... | kernel options]"""

import sys

USAGE = """\
sandbox-kernel: a Jupyter kernel that runs every cell in a persistent bash session, in a sandbox.

usage:
  python -m sandbox_kernel install [--enterprise-gateway] [--user | --sys-prefix | --prefix PATH]
      install the kernelspec 'sandbox' ("Bash (sandbox)"), or with --enterprise-gateway
      'sandbox_distributed' for Enterprise Gateway's remote hosts; default: --sys-prefix when in a
      virtual environment, else --user
  python -m sandbox_kernel launch --kernel-id ID --response-address IP:PORT --public-key KEY [--port-range A..B] [kernel options]
      start the kernel for Enterprise Gateway (its kernelspec does this)
  python -m sandbox_kernel -f CONNECTION_FILE [--SandboxKernel.OPTION=VALUE ...]
      run the kernel (Jupyter does this); options can also go in jupyter_sandbox_kernel_config.py
      in a Jupyter config directory (`jupyter --paths`)
  python -m sandbox_kernel --help-all
      every option with its help
"""


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["install"]:
        from .install import main as install

        return install(argv[1:])
    if argv[:1] == ["launch"]:
        from .gateway_launcher import main as launch_for_gateway

        return launch_for_gateway(argv[1:])
    if argv in ([], ["-h"], ["--help"]):
        print(USAGE)
        return 0
    from .app import launch

    launch(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
