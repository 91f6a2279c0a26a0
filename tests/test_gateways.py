"""The kernel through gateways, where users who outgrow one machine run it: Jupyter Kernel Gateway
(its REST API and kernel websockets, as JupyterLab's `--gateway-url` and other clients use them),
run as root and as an unprivileged user beside a HOME laid out like a real one, with the
gateway's token in its environment as deployments pass it. Every attack is made from a cell; the
host is checked from outside afterwards."""

import json
import os
import secrets
import subprocess
import sys

import pytest

from harness import USER_VENV_PYTHON, JupyterAPI, free_port, process_tree, still_running, stop_server, wait_until
from test_layouts import HostHome

pytestmark = pytest.mark.timeout(180)


class KernelGateway(JupyterAPI):
    """`jupyter kernelgateway` on a free loopback port, as the HOME's user, started in its project
    directory (where its kernels start), with its token in KG_AUTH_TOKEN."""

    def __init__(self, home):
        super().__init__(free_port(), f"kg-{secrets.token_hex(16)}")
        self.home = home
        python = USER_VENV_PYTHON if home.flavor == "user" else sys.executable
        env = dict(home.kernel_env(), KG_AUTH_TOKEN=self.token)
        self.log_path = os.path.join(home.path, "..", f"kg-{self.port}.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [*(home.run_as if home.flavor == "user" else []), python, "-m", "kernel_gateway",
             "--KernelGatewayApp.ip=127.0.0.1", f"--KernelGatewayApp.port={self.port}", "--KernelGatewayApp.port_retries=0"],
            cwd=home.project, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        if not wait_until(self._up, 60):
            self.stop()
            raise AssertionError(f"the kernel gateway did not start:\n{self._log()}")

    def _log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def _up(self):
        assert self.proc.poll() is None, f"the kernel gateway exited:\n{self._log()}"
        try:
            return self.api("GET", "api")[0] == 200
        except OSError:
            return False

    def connection_file(self, kernel_id):
        return os.path.join(self.home.path, ".local/share/jupyter/runtime", f"kernel-{kernel_id}.json")

    def kernel_tree(self, kernel_id):
        """The kernel process (found by its connection file) and everything below it."""
        pids = [p for p in still_running(process_tree(self.proc.pid)) if _cmdline_has(p, f"kernel-{kernel_id}.json")]
        assert len(pids) == 1, pids
        return process_tree(pids[0])

    def stop(self):
        stop_server(self.proc, self.log)
        os.unlink(self.log_path)


def _cmdline_has(pid, text):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return text.encode() in f.read()
    except OSError:
        return False


@pytest.fixture(scope="module", params=["root", "user"])
def gateway(request):
    home = HostHome(request.param)
    gw = KernelGateway(home)
    yield gw
    gw.stop()
    home.close()


def test_cells_keep_their_state_through_the_kernel_gateway_and_say_they_are_isolated(gateway):
    kid = gateway.start_kernel("sandbox")
    try:
        assert gateway.run_cell(kid, "mkdir -p sub && cd sub; X=kept; f() { echo fn; }") == ""
        r = gateway.run(kid, 'echo "$PWD $X $(f)"')
        assert (r.status, r.stdout) == ("ok", f"{gateway.home.project}/sub kept fn\n")
        report = gateway.run_cell(kid, "%sandbox")
        assert report.startswith("isolation:       isolated (Sandbox.isolation=auto)\n"), report
    finally:
        gateway.api("DELETE", f"api/kernels/{kid}")


def test_a_cell_finds_nothing_of_the_gateway_its_token_its_port_or_the_kernels_connection_file(gateway):
    kid = gateway.start_kernel("sandbox")
    try:
        with open(gateway.connection_file(kid)) as f:
            key = json.load(f)["key"]  # the host has it: the test can fail
        # The needles go through a file, so that no command line of the cell's carries them.
        half = len(gateway.token) // 2
        out = gateway.run_cell(kid, f"""a={gateway.token[:half]}; b={gateway.token[half:]}; k1={key[:8]}; k2={key[8:]}
printf '%s\\n' "$a$b" "$k1$k2" "{gateway.home.secret}" > /tmp/needles; unset a b k1 k2
echo found:; grep -rlsF -D skip -f /tmp/needles /proc/[0-9]*/environ /proc/[0-9]*/cmdline ~ /home /tmp /run /var/tmp 2>/dev/null | grep -v '^/tmp/needles$'; echo end
ls -A ~/.local/share/jupyter/runtime 2>&1 | head -3
(exec 3<>/dev/tcp/127.0.0.1/{gateway.port}) 2>/dev/null && echo REACHED-THE-GATEWAY
curl -s -m 3 -H "Authorization: token $(head -1 /tmp/needles)" http://127.0.0.1:{gateway.port}/api/kernels || echo curl-refused""")
        assert "found:\nend\n" in out, out
        assert "REACHED-THE-GATEWAY" not in out and "curl-refused" in out, out
        assert os.path.exists(gateway.connection_file(kid))
        assert f"kernel-{kid}.json" not in out
        # The gateway still serves, and the kernel's connection file is as it was.
        assert gateway.api("GET", f"api/kernels/{kid}")[0] == 200
        with open(gateway.connection_file(kid)) as f:
            assert json.load(f)["key"] == key
    finally:
        gateway.api("DELETE", f"api/kernels/{kid}")


def test_interrupt_restart_and_shutdown_through_the_gateway_leave_nothing_behind(gateway):
    kid = gateway.start_kernel("sandbox")
    try:
        gateway.run_cell(kid, "X=before-restart; sleep 300 & echo started")
        r = gateway.run(kid, "echo start; sleep 60; echo not reached", interrupt_after=2)
        assert (r.status, r.ename, r.evalue, r.stdout) == ("error", "Interrupted", "the cell was interrupted", "start\n")
        assert r.elapsed < 4
        first = gateway.kernel_tree(kid)
        assert len(first) >= 4  # the kernel, its supervisor, the sandbox's PID 1, a session, the sleep
        assert gateway.api("POST", f"api/kernels/{kid}/restart")[0] == 200
        assert wait_until(lambda: not still_running(first), 10), still_running(first)
        assert gateway.run_cell(kid, 'echo "${X-gone} $(jobs | wc -l)"') == "gone 0\n"
        second = gateway.kernel_tree(kid)
    finally:
        assert gateway.api("DELETE", f"api/kernels/{kid}")[0] == 204
    assert wait_until(lambda: not still_running(second), 10), still_running(second)
    assert not os.path.exists(gateway.connection_file(kid))
