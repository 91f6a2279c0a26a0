"""The kernel's own options: documented traitlets, and bad ones stop it with one clear line."""

import json
import os
import subprocess
import sys

import pytest
from jupyter_client.connect import write_connection_file


def _start_kernel_directly(tmp_path, *options, env=None):
    conn, _ = write_connection_file(str(tmp_path / "conn.json"))
    return subprocess.run(
        [sys.executable, "-P", "-m", "sandbox_kernel", "-f", conn, *options],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env,
    )


@pytest.mark.parametrize(
    "option, message",
    [
        ("--SandboxKernel.no_such_option=1", "sandbox-kernel: unknown option SandboxKernel.no_such_option (known: "),
        ("--Sandbox.isolaton=off", "sandbox-kernel: unknown option Sandbox.isolaton (known: "),
        ("--Sandbox.isolation=sometimes", "sandbox-kernel: The 'isolation' trait of a Sandbox instance expected any of ['auto', 'required', 'off'], not the str 'sometimes'."),
        ("--SandboxKernel.max_output_bytes=lots", "sandbox-kernel: "),
        ("--Sandbox.env_passthrough=JUPYTER_TOKEN", "sandbox-kernel: Sandbox.env_passthrough: 'JUPYTER_TOKEN' belongs to the control plane and never crosses"),
        ("--Sandbox.home_shared=.ssh", "sandbox-kernel: Sandbox.home_shared: '.ssh' would show .ssh, which the sandbox protects"),
        ("--Sandbox.home_shared=../etc", "sandbox-kernel: Sandbox.home_shared: '../etc' is not a name below HOME"),
        ("--Sandbox.shared_directory=relative/dir", "sandbox-kernel: Sandbox.shared_directory: 'relative/dir' is not an absolute path to a directory"),
        ("--Sandbox.allowed_hosts=exa_mple.com", "sandbox-kernel: Sandbox.allowed_hosts: 'exa_mple.com' is not a host name, *.name, *, an address or a network"),
        ("--Sandbox.allowed_hosts=127.0.0.1", "sandbox-kernel: Sandbox.allowed_hosts: '127.0.0.1' can never be reached (loopback)"),
        ("--Sandbox.allowed_hosts=pypi.org", "sandbox-kernel: Sandbox.allowed_hosts is set, but Sandbox.network=private does not filter: set Sandbox.network=proxy"),
        ("--Sandbox.proxy_port=70000", "sandbox-kernel: Sandbox.proxy_port: 70000 is not a port"),
        ("--Sandbox.blocked_syscalls=fork", "sandbox-kernel: Sandbox.blocked_syscalls: 'fork' cannot be filtered; choose from io_uring_setup, "),
    ],
)
def test_bad_options_stop_the_kernel_with_one_clear_line(tmp_path, option, message):
    result = _start_kernel_directly(tmp_path, option)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreadable_config_file_stops_the_kernel(tmp_path):
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "jupyter_sandbox_kernel_config.py").write_text("c.SandboxKernel.max_output_bytes = (\n")
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config_dir)}
    result = _start_kernel_directly(tmp_path, env=env)
    assert result.returncode == 2
    assert "sandbox-kernel: cannot read jupyter_sandbox_kernel_config.py" in result.stderr


def test_config_file_in_a_jupyter_config_dir_is_applied(new_kernel, tmp_path):
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "jupyter_sandbox_kernel_config.py").write_text("c.SandboxKernel.error_on_nonzero_exit = False\n")
    k = new_kernel(env={**os.environ, "JUPYTER_CONFIG_DIR": str(config_dir)})
    assert k.run("false").status == "ok"


def test_config_in_the_notebook_directory_is_ignored(new_kernel, tmp_path):
    # Cells can write the notebook's directory: a config there must not steer the next kernel.
    (tmp_path / "jupyter_sandbox_kernel_config.py").write_text("c.SandboxKernel.error_on_nonzero_exit = False\n")
    (tmp_path / "ipython_kernel_config.py").write_text("c.SandboxKernel.error_on_nonzero_exit = False\n")
    (tmp_path / "sandbox_kernel").mkdir()
    (tmp_path / "sandbox_kernel" / "__init__.py").write_text("raise SystemExit('imported from the notebook dir')\n")
    k = new_kernel()
    assert k.run("false").status == "error"


def test_environment_is_built_from_an_allowlist(new_kernel):
    env = {**os.environ, "JPY_SESSION_SECRET": "s3cret-jpy", "JUPYTER_TOKEN": "s3cret-token",
           "MY_API_KEY": "s3cret-key", "PASSED_ON": "visible", "LC_TIME": "C.UTF-8"}
    k = new_kernel("--Sandbox.env_passthrough=PASSED_ON", env=env)
    r = k.run("env; cat /proc/$$/environ | tr '\\0' '\\n'")
    assert "s3cret" not in r.stdout
    assert "PASSED_ON=visible\n" in r.stdout and "LC_TIME=C.UTF-8\n" in r.stdout
    assert f"PATH={os.environ['PATH']}\n" in r.stdout


def test_help_and_install(tmp_path):
    out = subprocess.run([sys.executable, "-m", "sandbox_kernel", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "python -m sandbox_kernel install" in out.stdout
    subprocess.run([sys.executable, "-m", "sandbox_kernel", "install", "--prefix", str(tmp_path)], check=True, capture_output=True)
    spec_dir = tmp_path / "share" / "jupyter" / "kernels" / "sandbox"
    spec = json.loads((spec_dir / "kernel.json").read_text())
    assert spec["display_name"] == "Bash (sandbox)" and spec["language"] == "bash"
    assert spec["argv"][:4] == [sys.executable, "-P", "-m", "sandbox_kernel"]
    assert {p.name for p in spec_dir.iterdir()} >= {"kernel.json", "logo-32x32.png", "logo-64x64.png", "logo-svg.svg"}
