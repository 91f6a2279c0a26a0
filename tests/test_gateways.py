"""The kernel through gateways, where users who outgrow one machine run it: Jupyter Kernel Gateway
(kernels it starts itself) and Enterprise Gateway with its DistributedProcessProxy (kernels it
starts on a remote host through `python -m sandbox_kernel launch`: the gateway's own host, which
it reaches without SSH, and a host of its own, reached over SSH). Both are driven through their REST API and kernel websockets, as
JupyterLab's `--gateway-url` drives them (sending KERNEL_USERNAME along, so that the kernel gets
little more than PATH: no HOME), run as root and as an unprivileged user beside a HOME laid out
like a real one, with the gateway's token in its environment as deployments pass it. Every attack
is made from a cell; the host is checked from outside afterwards."""

import glob
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

from harness import (USER_VENV_PYTHON, JupyterAPI, TestHost, ensure_test_user, free_port, process_tree, still_running,
                     stop_server, wait_until)
from test_layouts import HostHome

pytestmark = pytest.mark.timeout(180)

# Enterprise Gateway pins jupyter_client < 7 and jupyter_server < 2: a venv of its own (`make test`).
EG_VENV_PYTHON = "/opt/sandbox-kernel-tests/eg-venv/bin/python"


class Gateway(JupyterAPI):
    """A gateway on a free loopback port, as the HOME's user, started in its project directory
    (where its kernels start)."""

    kernel_name = None
    token_variable = None

    def __init__(self, home):
        super().__init__(free_port(), f"gw-{secrets.token_hex(16)}")
        self.home = home
        self.python = USER_VENV_PYTHON if home.flavor == "user" else sys.executable
        self.log_path = os.path.join(os.path.dirname(home.path), f"gateway-{self.port}.log")
        self.log = open(self.log_path, "wb")
        env = dict(home.kernel_env(), **{self.token_variable: self.token}, **self.environment())
        self.proc = subprocess.Popen([*(home.run_as if home.flavor == "user" else []), *self.command()],
                                     cwd=home.project, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        if not wait_until(self._up, 60):
            self.stop()
            raise AssertionError(f"the gateway did not start:\n{self.log_text()}")

    def environment(self):
        return {}

    def log_text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def _up(self):
        assert self.proc.poll() is None, f"the gateway exited:\n{self.log_text()}"
        try:
            return self.api("GET", "api")[0] == 200
        except OSError:
            return False

    def start(self):
        # As JupyterLab does: the user's name (Enterprise Gateway refuses root's kernels without
        # it) and the notebook's directory (the remote kernel's working directory).
        return self.start_kernel(self.kernel_name, env={"KERNEL_USERNAME": "notebook-user", "KERNEL_WORKING_DIR": self.home.project})

    def kernel_tree(self, kernel_id):
        """The first process of the kernel's (the kernel, or its launcher, which may have come
        over SSH) and all below it."""
        mine = [p for p in map(int, filter(str.isdigit, os.listdir("/proc"))) if p != os.getpid() and _cmdline_has(p, kernel_id)]
        tops = [p for p in mine if _parent(p) not in mine]
        assert len(tops) == 1, (mine, tops)
        return process_tree(tops[0])

    def stop(self):
        stop_server(self.proc, self.log)
        os.unlink(self.log_path)


class KernelGateway(Gateway):
    kernel_name = "sandbox"
    token_variable = "KG_AUTH_TOKEN"

    def command(self):
        return [self.python, "-m", "kernel_gateway", "--KernelGatewayApp.ip=127.0.0.1",
                f"--KernelGatewayApp.port={self.port}", "--KernelGatewayApp.port_retries=0"]

    def connection_file(self, kernel_id):
        return os.path.join(self.home.path, ".local/share/jupyter/runtime", f"kernel-{kernel_id}.json")


class EnterpriseGateway(Gateway):
    """With the package's 'sandbox_distributed' kernelspec, installed for the user as the README
    says; the remote host is this one, the response address loopback."""

    kernel_name = "sandbox_distributed"
    token_variable = "EG_AUTH_TOKEN"

    def __init__(self, home):
        run_as = home.run_as if home.flavor == "user" else []
        python = USER_VENV_PYTHON if home.flavor == "user" else sys.executable
        subprocess.run([*run_as, python, "-m", "sandbox_kernel", "install", "--enterprise-gateway", "--user"],
                       env=home.kernel_env(), check=True, capture_output=True)
        super().__init__(home)

    remote_host = response_ip = "127.0.0.1"

    def environment(self):
        return {"EG_RESPONSE_IP": self.response_ip, "EG_RESPONSE_PORT": str(free_port())}

    def command(self):
        return [EG_VENV_PYTHON, "-m", "enterprise_gateway", "--EnterpriseGatewayApp.ip=127.0.0.1",
                f"--EnterpriseGatewayApp.port={self.port}", "--EnterpriseGatewayApp.port_retries=0",
                f"--EnterpriseGatewayApp.remote_hosts={self.remote_host}"]

    def connection_file(self, kernel_id):
        """The launcher's (the gateway keeps the connection info in memory only)."""
        found = glob.glob(f"/tmp/sandbox-kernel-launch-*/kernel-{kernel_id}.json")
        assert len(found) == 1, found
        return found[0]

    def comm_port(self, kernel_id):
        """The port the launcher takes the gateway's requests on (its log says it)."""
        with open(f"/tmp/kernel-{kernel_id}.log") as f:
            lines = [line for line in f if "gateway requests on port" in line]
        return int(lines[-1].rsplit(" ", 1)[1])


class RemoteEnterpriseGateway(EnterpriseGateway):
    """Its remote host a host of its own, reached over SSH as its DistributedProcessProxy does:
    Debian's sshd in a network namespace of the test's (sharing this machine's files, as hosts
    with a shared home and software do), the user's key in the user's ssh-agent, the host's key
    in ~/.ssh/known_hosts. The launcher's requests and connection info cross the link between."""

    def __init__(self, home):
        self.keys = tempfile.mkdtemp(prefix="sk-sshd-")
        os.chmod(self.keys, 0o755)
        for name in ("host", "client"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{self.keys}/{name}"], check=True)
        os.chmod(f"{self.keys}/client.pub", 0o644)
        config = f"{self.keys}/sshd_config"
        with open(config, "w") as f:
            f.write(f"HostKey {self.keys}/host\nAuthorizedKeysFile {self.keys}/client.pub\nPidFile none\n"
                    "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                    "UsePAM no\nStrictModes no\n")
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # its privilege separation directory
        # Without PAM, sshd refuses a locked account ('!' in the shadow file): the test user's is.
        self.unlocked = home.flavor == "user"
        if self.unlocked:
            _set_password_field(home.owner.pw_name, "*")
        self.host = TestHost(f"import os; os.execv('/usr/sbin/sshd', ['/usr/sbin/sshd', '-D', '-e', '-f', {config!r}])", port=22)
        self.remote_host, self.response_ip = self.host.private, self.host.own
        client = os.path.join(home.agent_dir, "client")
        shutil.copyfile(f"{self.keys}/client", client)
        os.chown(client, home.owner.pw_uid, home.owner.pw_gid)
        os.chmod(client, 0o600)
        subprocess.run([*home.run_as, "ssh-add", "-q", client], env=home.kernel_env(), check=True)
        os.unlink(client)
        with open(f"{self.keys}/host.pub") as f:
            host_key = f.read().split()[:2]
        with open(os.path.join(home.path, ".ssh", "known_hosts"), "a") as f:
            f.write(f"{self.host.private} {' '.join(host_key)}\n")
        super().__init__(home)

    def environment(self):
        return {**super().environment(), "EG_REMOTE_USER": self.home.owner.pw_name}

    def stop(self):
        super().stop()
        self.host.close()
        shutil.rmtree(self.keys, ignore_errors=True)
        if self.unlocked:
            _set_password_field(self.home.owner.pw_name, "!")


def _set_password_field(user, value):
    subprocess.run(["usermod", "-p", value, user], check=True)


def _cmdline_has(pid, text):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return text.encode() in f.read()
    except OSError:
        return False


def _parent(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None  # gone


GATEWAYS = {"kernel gateway": KernelGateway, "enterprise gateway": EnterpriseGateway,
            "enterprise gateway over ssh": RemoteEnterpriseGateway}
EVERY = [(g, f) for g in GATEWAYS for f in ("root", "user")]
# The launcher's own tests, on the same module-wide gateways.
ENTERPRISE = pytest.mark.parametrize("gateway", [p for p in EVERY if p[0] == "enterprise gateway"],
                                     indirect=True, ids=" as ".join)


@pytest.fixture(scope="module", params=EVERY, ids=" as ".join)
def gateway(request):
    kind, flavor = request.param
    # The kernel has no HOME: the account's entry says where its home is, so the test user's is
    # the HOME laid out for the test, for now (root's is /root, and the test's a directory of root's).
    path = account = None
    if flavor == "user":
        account = ensure_test_user()
        path = tempfile.mkdtemp(prefix="sk-user-home-", dir="/home")
        _set_home(account.pw_name, path)
    home = HostHome(flavor, path)
    try:
        gw = GATEWAYS[kind](home)
        yield gw
        gw.stop()
    finally:
        home.close()
        if account:
            _set_home(account.pw_name, account.pw_dir)


def _set_home(user, path):
    """usermod -d, once the user's processes of the test before have gone."""
    assert wait_until(lambda: subprocess.run(["usermod", "-d", path, user], capture_output=True).returncode == 0, 20)


@pytest.fixture
def kernel(gateway):
    kid = gateway.start()
    yield kid
    gateway.api("DELETE", f"api/kernels/{kid}")


def test_cells_keep_their_state_through_the_gateway_and_say_they_are_isolated(gateway, kernel):
    if isinstance(gateway, RemoteEnterpriseGateway):  # the kernel runs on the remote host
        tree = gateway.kernel_tree(kernel)
        launcher = min(tree, key=tree.get)
        assert os.stat(f"/proc/{launcher}/ns/net").st_ino == os.stat(f"/run/netns/{gateway.host.ns}").st_ino
    assert gateway.run_cell(kernel, "mkdir -p sub && cd sub; X=kept; f() { echo fn; }") == ""
    r = gateway.run(kernel, 'echo "$PWD $X $(f)"')
    assert (r.status, r.stdout) == ("ok", f"{gateway.home.project}/sub kept fn\n")
    report = gateway.run_cell(kernel, "%sandbox")
    assert report.startswith("isolation:       isolated (Sandbox.isolation=auto)\n"), report
    facts = dict(line.split(":", 1) for line in report.splitlines() if ":" in line)
    assert facts["notebook dir"].strip().startswith(f"{gateway.home.project}: shared read-write"), report


def test_a_cell_finds_nothing_of_the_gateway_its_token_its_port_or_the_kernels_connection_file(gateway, kernel):
    path = gateway.connection_file(kernel)
    with open(path) as f:
        key = json.load(f)["key"]  # the host has it: the test can fail
    # The needles go through a file, so that no command line of the cell's carries them.
    half = len(gateway.token) // 2
    out = gateway.run_cell(kernel, f"""a={gateway.token[:half]}; b={gateway.token[half:]}; k1={key[:8]}; k2={key[8:]}
printf '%s\\n' "$a$b" "$k1$k2" "{gateway.home.secret}" > /tmp/needles; unset a b k1 k2
echo found:; grep -rlsF -D skip -f /tmp/needles /proc/[0-9]*/environ /proc/[0-9]*/cmdline ~ /home /tmp /run /var/tmp 2>/dev/null | grep -v '^/tmp/needles$'; echo end
ls -A ~/.local/share/jupyter/runtime {os.path.dirname(path)} 2>&1 | grep -v 'No such file'
(exec 3<>/dev/tcp/127.0.0.1/{gateway.port}) 2>/dev/null && echo REACHED-THE-GATEWAY
curl -s -m 3 -H "Authorization: token $(head -1 /tmp/needles)" http://127.0.0.1:{gateway.port}/api/kernels || echo curl-refused""")
    assert "found:\nend\n" in out, out
    assert "REACHED-THE-GATEWAY" not in out and "curl-refused" in out, out
    assert f"kernel-{kernel}.json" not in out, out
    # The gateway still serves, and the kernel's connection file is as it was.
    assert gateway.api("GET", f"api/kernels/{kernel}")[0] == 200
    with open(path) as f:
        assert json.load(f)["key"] == key


def test_interrupt_restart_and_shutdown_through_the_gateway_leave_nothing_behind(gateway):
    kid = gateway.start()
    try:
        gateway.run_cell(kid, "X=before-restart; sleep 300 & echo started")
        r = gateway.run(kid, "echo start; sleep 60; echo not reached", interrupt_after=2)
        assert (r.status, r.ename, r.evalue, r.stdout) == ("error", "Interrupted", "the cell was interrupted", "start\n")
        assert r.elapsed < 4
        first = gateway.kernel_tree(kid)
        assert len(first) >= 4  # the kernel (and its launcher), its supervisor, the sandbox, a session, the sleep
        assert gateway.api("POST", f"api/kernels/{kid}/restart")[0] == 200
        assert wait_until(lambda: not still_running(first), 10), still_running(first)
        assert gateway.run_cell(kid, 'echo "${X-gone} $(jobs | wc -l)"') == "gone 0\n"
        second = gateway.kernel_tree(kid)
        path = gateway.connection_file(kid)
    finally:
        assert gateway.api("DELETE", f"api/kernels/{kid}")[0] == 204
    assert wait_until(lambda: not still_running(second), 10), still_running(second)
    assert wait_until(lambda: not os.path.exists(path), 5), path


@pytest.fixture(scope="module")
def elsewhere():
    """A host in a network namespace of the test's own: not the gateway's."""
    host = TestHost("import socket, time\ns = socket.socket(); s.bind(('0.0.0.0', 8080)); s.listen(); time.sleep(3600)")
    yield host
    host.close()


def _send(address, port, data, netns=None):
    """Sends data to the launcher's request port and closes, as the gateway does (from netns)."""
    code = (f"import socket\ns = socket.create_connection(({address!r}, {port}), 5)\n"
            f"try:\n    s.sendall({data!r}); s.shutdown(socket.SHUT_WR); s.recv(1)\nexcept OSError:\n    pass")  # cut short
    subprocess.run([*(["ip", "netns", "exec", netns] if netns else []), sys.executable, "-c", code], check=True, timeout=20)


@ENTERPRISE
def test_the_launcher_takes_only_the_gateways_requests_from_the_gateways_host(gateway, kernel, elsewhere):
    port, tree = gateway.comm_port(kernel), gateway.kernel_tree(kernel)
    # From another host: not even shutdown. From the gateway's: no signal but 0, TERM and KILL;
    # nothing malformed, nothing too long.
    _send(elsewhere.own, port, b'{"shutdown": 1}', netns=elsewhere.ns)
    _send(elsewhere.own, port, b'{"signum": 9}', netns=elsewhere.ns)
    for data in (b'{"signum": 19}', b'{"signum": 2}', b'{"signum": "9"}', b'[9]', b'not json', b'{"signum": 0,' + b' ' * 8192 + b'}'):
        _send("127.0.0.1", port, data)
    assert gateway.run_cell(kernel, "echo still here") == "still here\n"
    assert not [p for p in tree if p not in still_running(tree)]
    with open(f"/tmp/kernel-{kernel}.log") as f:
        log = f.read()
    assert log.count("not the gateway's host") == 2 and log.count("ignored signal") == 3, log
    _send("127.0.0.1", port, b'{"signum": 9}')  # as the gateway kills a kernel
    assert wait_until(lambda: not still_running(tree), 10), still_running(tree)


@ENTERPRISE
def test_a_launcher_killed_outright_takes_its_kernel_and_sandbox_along(gateway, kernel):
    gateway.run_cell(kernel, "sleep 300 &")
    tree = gateway.kernel_tree(kernel)
    os.kill(min(tree, key=tree.get), signal.SIGKILL)  # the launcher: the first of them to start
    assert wait_until(lambda: not still_running(tree), 10), still_running(tree)


@pytest.mark.parametrize("arguments, message", [
    ([], "--kernel-id is required (the gateway fills it in)"),
    (["--kernel-id", "k/../x", "--response-address", "127.0.0.1:1", "--public-key", "eA=="], "--kernel-id 'k/../x' is not a kernel id"),
    (["--kernel-id", "k", "--response-address", "nowhere", "--public-key", "eA=="], "--response-address 'nowhere' is not HOST:PORT"),
    (["--kernel-id", "k", "--response-address", "127.0.0.1:1", "--public-key", "eA==", "--port-range", "9..1"], "--port-range '9..1' is not LOWER..UPPER"),
    (["--kernel-id", "k", "--response-address", "127.0.0.1:1", "--public-key", "not a key"], "--public-key is not a base64 RSA public key"),
    (["--kernel-id", "k", "--response-address", "127.0.0.1:1", "--public-key", "eA==", "stray"], "unknown argument 'stray' (kernel options go as --Class.option=value)"),
])
def test_the_launcher_says_what_is_wrong_with_its_arguments_in_one_line(arguments, message):
    r = subprocess.run([sys.executable, "-m", "sandbox_kernel", "launch", *arguments], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (2, "", f"sandbox-kernel launch: {message}\n")
    assert not glob.glob("/tmp/sandbox-kernel-launch-*/kernel-k.json")
