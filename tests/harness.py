"""Driving a real sandbox kernel process through jupyter_client, and what a user would see."""

import asyncio
import dataclasses
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

KERNEL_NAME = "sandbox"
# The unprivileged flavour: a user made by the test set-up, running the package from a venv that
# `make test` builds from Debian's python under /opt (so that the user can reach it).
TEST_USER = "sk-tester"
USER_VENV_PYTHON = "/opt/sandbox-kernel-tests/venv/bin/python"
# A kernel in a place that forbids user namespaces, as a locked-down container would: its own
# user namespace whose limit on further user namespaces is 0.
NO_USERNS = ["unshare", "--user", "--map-root-user", "sh", "-c",
             'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"', "sh"]
# A Linux without Landlock (before 5.13, or built without it), as the kernel sees it: a seccomp
# filter answers landlock_create_ruleset (444 on every architecture) with ENOSYS.
NO_LANDLOCK = [sys.executable, "-c", """import ctypes, os, struct, sys
prog = [(0x20, 0, 0, 0), (0x15, 0, 1, 444), (0x06, 0, 0, 0x00050000 | 38), (0x06, 0, 0, 0x7FFF0000)]
code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in prog))
libc = ctypes.CDLL(None)
assert libc.prctl(38, 1, 0, 0, 0) == 0 and libc.prctl(22, 2, ctypes.create_string_buffer(struct.pack("HxxxxxxP", len(prog), ctypes.addressof(code))), 0, 0) == 0
os.execvp(sys.argv[1], sys.argv[1:])"""]


def ensure_test_user():
    try:
        return pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/bin/bash", TEST_USER], check=True)
        return pwd.getpwnam(TEST_USER)


def user_dir(prefix):
    """A directory the unprivileged flavour can reach and own (pytest's tmp dirs are root's 0700)."""
    user = ensure_test_user()
    path = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(path, 0o755)
    os.chown(path, user.pw_uid, user.pw_gid)
    return path


def _spec_manager(flavor, python, prefix=()):
    """A kernelspec for a flavour other than the installed one, in a directory of its own; prefix:
    a command that runs first, as root, and execs its arguments (where the kernel starts)."""
    base = tempfile.mkdtemp(prefix="sk-spec-")
    spec_dir = os.path.join(base, "kernels", KERNEL_NAME)
    os.makedirs(spec_dir)
    command = [python, "-P", "-m", "sandbox_kernel", "-f", "{connection_file}"]
    if flavor == "user":
        command = ["sh", "-c", f'chown {TEST_USER}: "$0" && exec setpriv --reuid={TEST_USER} --regid={TEST_USER} '
                   '--clear-groups -- "$@"', "{connection_file}", *command]
    elif flavor == "no-userns":
        command = NO_USERNS + command
    elif flavor == "no-landlock":
        command = NO_LANDLOCK + command
    command = list(prefix) + command
    with open(os.path.join(spec_dir, "kernel.json"), "w") as f:
        json.dump({"argv": command, "display_name": f"sandbox ({flavor})", "language": "bash", "interrupt_mode": "message"}, f)
    return KernelSpecManager(kernel_dirs=[os.path.join(base, "kernels")]), base


@dataclasses.dataclass
class Result:
    reply: dict
    metadata: dict
    messages: list  # (seconds since the request, msg_type, content)
    elapsed: float
    input_requests: list
    interrupted_at: float = None  # seconds since the request, when the test interrupted

    @property
    def status(self):
        return self.reply["status"]

    @property
    def ename(self):
        return self.reply.get("ename")

    @property
    def evalue(self):
        return self.reply.get("evalue")

    def text(self, name):
        return "".join(c["text"] for _t, kind, c in self.messages if kind == "stream" and c["name"] == name)

    @property
    def stdout(self):
        return self.text("stdout")

    @property
    def stderr(self):
        return self.text("stderr")

    def streams(self, name=None):
        return [(t, c) for t, kind, c in self.messages if kind == "stream" and (name is None or c["name"] == name)]

    @property
    def errors(self):
        return [c for _t, kind, c in self.messages if kind == "error"]

    @property
    def displays(self):
        return [c for _t, kind, c in self.messages if kind == "display_data"]


class Kernel:
    """One kernel process, started as Jupyter would start it (the installed kernelspec)."""

    def __init__(self, cwd, options=(), env=None, flavor="root", home=None, connection_file=None, prefix=()):
        """flavor: 'root' (the installed kernelspec, as this test process: root in CI), 'user'
        (the same kernel run by an unprivileged user), 'no-userns' (where namespaces fail) or
        'no-landlock' (a Linux without Landlock).
        home: the kernel's HOME (by default the test's own as root, a fresh one as the user).
        prefix: a command that starts the kernel (run as root, it execs its arguments)."""
        self.flavor = flavor
        self._spec_base = None
        env = dict(env or os.environ)
        if flavor == "root" and not prefix:
            self.km = KernelManager(kernel_name=KERNEL_NAME)
        else:
            python = USER_VENV_PYTHON if flavor == "user" else sys.executable
            ksm, self._spec_base = _spec_manager(flavor, python, prefix)
            self.km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=ksm)
        if flavor == "user":
            ensure_test_user()
            conn_dir = user_dir("sk-conn-")
            self.km.connection_file = os.path.join(conn_dir, "kernel.json")
            env.update(HOME=home or user_dir("sk-home-"), USER=TEST_USER, LOGNAME=TEST_USER)
        elif home:
            env["HOME"] = home
        if connection_file:
            self.km.connection_file = connection_file
        self.home = env.get("HOME")
        self.km.start_kernel(cwd=str(cwd), extra_arguments=list(options), env=env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.cwd = cwd
        # The first cell carries the kernel's notice about its isolation mode; tests that look
        # for it read it here, the others see clean output.
        self.first = self.run("true")

    @property
    def pid(self):
        return self.km.provisioner.process.pid

    def run(self, code, timeout=60, stdin=None, interrupt_after=None, keep_text=True, interrupt_on=None):
        """Execute a cell; stdin: None (no stdin, like nbclient) or a callable prompt, password -> str.
        keep_text=False: a stream message's text is replaced by its size in bytes (for floods).
        interrupt_after: seconds; interrupt_on: a text the cell prints once it is ready for it
        (a program that must first set up its signal handling, however slow the machine)."""
        messages, inputs = [], []
        start = time.monotonic()
        interrupted_at = []

        def on_output(msg):
            content = msg["content"]
            if interrupt_on and not interrupted_at and msg["msg_type"] == "stream" and interrupt_on in content["text"]:
                interrupted_at.append(time.monotonic() - start)
                self.km.interrupt_kernel()
            if not keep_text and msg["msg_type"] == "stream":
                content = {**content, "text": len(content["text"].encode())}
            messages.append((time.monotonic() - start, msg["msg_type"], content))

        def on_stdin(msg):
            inputs.append(msg["content"])
            self.kc.input(stdin(msg["content"]["prompt"], msg["content"]["password"]))

        timer = None
        if interrupt_after is not None:
            timer = threading.Timer(interrupt_after, self.km.interrupt_kernel)
            timer.start()
        try:
            reply = self.kc.execute_interactive(
                code,
                timeout=timeout,
                output_hook=on_output,
                allow_stdin=stdin is not None,
                stdin_hook=on_stdin if stdin is not None else None,
            )
        finally:
            if timer is not None:
                timer.cancel()
        elapsed = time.monotonic() - start
        if interrupt_after is not None:
            interrupted_at.append(interrupt_after)
        return Result(reply["content"], reply["metadata"], messages, elapsed, inputs, (interrupted_at or [None])[0])

    def request(self, method, *args):
        """A shell request (complete, inspect, is_complete, kernel_info); its reply's content."""
        msg_id = getattr(self.kc, method)(*args)
        while True:
            reply = self.kc.get_shell_msg(timeout=30)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply["content"]

    def comm(self, msg_type, content, timeout=30):
        """Send a comm_open or comm_msg; (type, content) of the comm_msg or comm_close that answers it."""
        msg = self.kc.session.msg(msg_type, content)
        self.kc.shell_channel.send(msg)
        deadline = time.monotonic() + timeout
        while True:
            m = self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            if m["parent_header"].get("msg_id") == msg["header"]["msg_id"] and m["msg_type"] in ("comm_msg", "comm_close"):
                return m["msg_type"], m["content"]

    def shutdown(self):
        self.kc.stop_channels()
        if self.km.is_alive():
            self.km.shutdown_kernel(now=False)
        if self._spec_base:
            shutil.rmtree(self._spec_base, ignore_errors=True)


class JupyterAPI:
    """The REST API and kernel websockets of a Jupyter server or a kernel gateway on a loopback
    port, spoken to as JupyterLab (or a gateway's client) speaks to them."""

    def __init__(self, port, token):
        self.port, self.token = port, token

    def api(self, method, path, body=None):
        """(HTTP status, JSON reply) of a REST call, errors included."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/{path}", data=data, method=method,
                                         headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, json.loads(raw) if raw else None

    def start_kernel(self, name, path="", env=None):
        """env: what a gateway client sends along (JupyterLab sends KERNEL_USERNAME)."""
        status, model = self.api("POST", "api/kernels", {"name": name, "path": path, **({"env": env} if env else {})})
        assert status == 201, model
        return model["id"]

    def request(self, kernel_id, msg_type, content, timeout=45, interrupt_after=None):
        """Sends one request over the kernel's websocket; a Result once the kernel is idle again.
        interrupt_after: seconds, then the REST API's interrupt (as JupyterLab's stop button)."""
        async def go():
            ws = await websocket_connect(HTTPRequest(
                f"ws://127.0.0.1:{self.port}/api/kernels/{kernel_id}/channels",
                headers={"Authorization": f"token {self.token}"}))
            msg_id = uuid.uuid4().hex
            ws.write_message(json.dumps({
                "header": {"msg_id": msg_id, "msg_type": msg_type, "username": "test", "session": uuid.uuid4().hex,
                           "date": "", "version": "5.3"},
                "parent_header": {}, "metadata": {}, "content": content, "channel": "shell", "buffers": []}))
            start = time.monotonic()
            if interrupt_after is not None:
                asyncio.get_running_loop().call_later(interrupt_after, lambda: threading.Thread(
                    target=self.api, args=("POST", f"api/kernels/{kernel_id}/interrupt")).start())
            reply, idle, messages = None, False, []
            while reply is None or not idle:
                message = json.loads(await ws.read_message())
                if message["parent_header"].get("msg_id") != msg_id:
                    continue
                if message["msg_type"] == msg_type.replace("_request", "_reply"):
                    reply = message
                elif message["msg_type"] == "status":
                    idle = message["content"]["execution_state"] == "idle"
                else:
                    messages.append((time.monotonic() - start, message["msg_type"], message["content"]))
            ws.close()
            return Result(reply["content"], reply["metadata"], messages, time.monotonic() - start, [], interrupt_after)

        return asyncio.run(asyncio.wait_for(go(), timeout))

    def run(self, kernel_id, code, timeout=45, interrupt_after=None):
        return self.request(kernel_id, "execute_request", {"code": code, "silent": False, "store_history": False,
                                                           "user_expressions": {}, "allow_stdin": False},
                            timeout, interrupt_after)

    def run_cell(self, kernel_id, code):
        """A cell that must succeed; its output (stdout and stderr)."""
        r = self.run(kernel_id, code)
        assert r.status == "ok", (code, r.reply, r.stdout, r.stderr)
        return r.text("stdout") + r.text("stderr")


def processes_named(fragment):
    """PIDs of processes whose command line contains fragment (as the host sees them)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if fragment.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            pass
    return found


def _stat(pid):
    """(ppid, start time) of a running process as the host sees it, or None. A zombie has ended:
    only its parent's wait is left, which for an orphan is init's, slow on some machines (this
    one's reaps after 1 to 2 s)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else (int(fields[1]), int(fields[19]))


def process_tree(root):
    """{pid: start time} of root and every process below it (the supervisor, the sandbox, the
    egress helper, whatever a cell started): what must all be gone when the kernel is."""
    table = {int(e): _stat(int(e)) for e in os.listdir("/proc") if e.isdigit()}
    children = {}
    for pid, st in table.items():
        if st:
            children.setdefault(st[0], []).append(pid)
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if table.get(pid):
            found[pid] = table[pid][1]
        todo.extend(children.get(pid, []))
    return found


def still_running(tree):
    """The processes of a process_tree() that still exist (the same process, not a reused pid)."""
    return sorted(pid for pid, start in tree.items() if (_stat(pid) or (0, None))[1] == start)


def free_port():
    """A loopback TCP port free right now (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_server(proc, log):
    """SIGTERM (a Jupyter server then shuts its kernels down); its process group goes if it
    lingers."""
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log.close()


def wait_until(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


class TestHost:
    """A host in a network namespace of the test's own, joined to this machine by a veth pair:
    the only non-loopback addresses a test may use. `private` is its address on the link,
    `own` this machine's end of it, `public` a public-looking one (192.88.99.0/24, the retired
    6to4 relay block, routed here to that namespace only), `link_local` one where clouds keep
    their metadata service (169.254.0.0/16, routed likewise). `server`: Python code it runs."""

    __test__ = False  # (not a test class, for pytest)

    def __init__(self, server, port=8080):
        # A subnet no other test host of this machine has (two may be up at once).
        taken = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True, check=True).stdout
        tag = next(t for t in iter(lambda: uuid.uuid4().hex[:6], None) if f" 10.203.{int(t[:2], 16)}." not in taken)
        self.ns, self._outer, inner = f"sk-host-{tag}", f"skh{tag}", f"skn{tag}"
        n = int(tag[:2], 16)
        self.private, self.own, self.public = f"10.203.{n}.2", f"10.203.{n}.1", f"192.88.99.{n}"
        self.link_local = f"169.254.{n}.2"
        self._server = None
        run = lambda *cmd: subprocess.run(cmd, check=True, capture_output=True)  # noqa: E731
        try:
            run("ip", "netns", "add", self.ns)
            run("ip", "link", "add", self._outer, "type", "veth", "peer", "name", inner)
            run("ip", "link", "set", inner, "netns", self.ns)
            run("ip", "addr", "add", f"{self.own}/30", "dev", self._outer)
            run("ip", "link", "set", self._outer, "up")
            for cmd in (["addr", "add", f"{self.private}/30", "dev", inner], ["addr", "add", f"{self.public}/32", "dev", inner],
                        ["addr", "add", f"{self.link_local}/32", "dev", inner], ["link", "set", inner, "up"]):
                run("ip", "netns", "exec", self.ns, "ip", *cmd)
            for address in (self.public, self.link_local):
                run("ip", "route", "add", f"{address}/32", "via", self.private)
            self._server = subprocess.Popen(["ip", "netns", "exec", self.ns, sys.executable, "-c", server])
            assert wait_until(lambda: _accepts(self.private, port), 10), "the test host's server did not start"
        except BaseException:
            self.close()
            raise

    def close(self):
        if self._server:
            self._server.kill()
            self._server.wait()
        subprocess.run(["ip", "link", "del", self._outer], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)


def _accepts(address, port):
    try:
        socket.create_connection((address, port), 1).close()
        return True
    except OSError:
        return False
