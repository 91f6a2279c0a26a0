"""Terminals into the sandbox (comm target sandbox_kernel.terminal), driven as the lab extension
drives them: comm_open, then keystrokes as {"stdin"} and sizes as {"set_size"}; what the shell
prints comes back as {"stdout"}, its end as comm_close {"exited"}. Checked from the host too."""

import json
import os
import queue
import tempfile
import time
import uuid

import pytest

from harness import Kernel, process_tree, processes_named, user_dir, wait_until

TARGET = "sandbox_kernel.terminal"
PROMPT = "# "  # root's prompt; a user's ends with "$ "


class Term:
    def __init__(self, kernel, data=None):
        self.k, self.id = kernel, uuid.uuid4().hex
        self.closed = None  # the comm_close's data, once it came
        self.errors = []
        self.messages = 0  # of stdout
        self._send("comm_open", {"comm_id": self.id, "target_name": TARGET, "data": data or {}})

    def _send(self, msg_type, content):
        self.k.kc.shell_channel.send(self.k.kc.session.msg(msg_type, content))

    def type(self, text):
        self._send("comm_msg", {"comm_id": self.id, "data": {"stdin": text}})

    def send(self, data):
        self._send("comm_msg", {"comm_id": self.id, "data": data})

    def close(self):
        self._send("comm_close", {"comm_id": self.id, "data": {}})

    def _next(self, timeout):
        """The next iopub message of this terminal's comm. Another terminal's messages are kept
        for it: terminals of one kernel share the iopub channel."""
        stash = self.k.__dict__.setdefault("terminal_messages", {})
        if stash.get(self.id):
            return stash[self.id].pop(0)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                m = self.k.kc.get_iopub_msg(timeout=left)
            except queue.Empty:
                return None
            comm_id = m["content"].get("comm_id")
            if comm_id == self.id:
                return m
            if comm_id is not None:
                stash.setdefault(comm_id, []).append(m)
        return None

    def read_until(self, wanted, timeout=15):
        """What the terminal printed until `wanted` is in it (or it closed); fails on a timeout."""
        out, deadline = "", time.monotonic() + timeout
        while wanted not in out and self.closed is None:
            left = deadline - time.monotonic()
            assert left > 0, f"{wanted!r} did not come; the terminal printed {out!r}"
            m = self._next(min(left, 0.5))
            if m is None:
                continue
            if m["msg_type"] == "comm_close":
                self.closed = m["content"]["data"]
            elif m["msg_type"] == "comm_msg":
                data = m["content"]["data"]
                if "stdout" in data:
                    out += data["stdout"]
                    self.messages += 1
                if "error" in data:
                    self.errors.append(data["error"])
        return out

    def run(self, line, marker, timeout=15):
        """Type a line; what it printed up to its marker."""
        self.type(line + "\r")
        return self.read_until(marker, timeout)


@pytest.mark.parametrize("flavor", ["root", "user"])
def test_a_terminal_is_a_shell_inside_the_sandbox(flavor):
    cwd = user_dir("sk-term-") if flavor == "user" else tempfile.mkdtemp(prefix="sk-term-")
    k = Kernel(cwd, flavor=flavor)
    try:
        t = Term(k, {"rows": 30, "cols": 100})
        t.read_until("$ " if flavor == "user" else PROMPT)
        out = t.run(f'stty size; tty; pwd; ls {k.km.connection_file}; env | grep -ci jupyter; echo "pid1=$(cat /proc/1/comm)"; '
                    "echo from-terminal > made-here.txt; sleep 4321.5 & echo done-$((6*7))", "done-42")
        assert "30 100\r\n/dev/pts/" in out and f"\r\n{cwd}\r\n" in out
        assert "No such file or directory" in out  # the kernel's connection file is not there
        assert "\r\n0\r\n" in out  # no JUPYTER_* variable crossed in
        assert "pid1=python" in out  # the sandbox's own PID namespace: its supervisor is PID 1's child
        # From the host: the file is in the notebook's directory, and the terminal's processes
        # run as an unprivileged uid (the sandbox's root is not the host's).
        with open(os.path.join(cwd, "made-here.txt")) as f:
            assert f.read() == "from-terminal\n"
        (sleeper,) = processes_named("\0" + "4321.5")
        with open(f"/proc/{sleeper}/status") as f:
            uid = next(line.split()[1] for line in f if line.startswith("Uid:"))
        assert uid != "0"
        # and a cell still sees what it saw before
        assert k.run("cat made-here.txt").stdout == "from-terminal\n"
        # closing the terminal ends what it started
        t.close()
        assert wait_until(lambda: not processes_named("\0" + "4321.5"), 10)
    finally:
        k.shutdown()


def test_a_terminal_without_isolation_says_so_first(tmp_path):
    k = Kernel(str(tmp_path), ["--Sandbox.isolation=off"])
    try:
        t = Term(k)
        out = t.read_until(PROMPT)
        assert out.startswith("sandbox-kernel: isolation is OFF (Sandbox.isolation=off): cells can see and reach the control plane.\r\n")
        # and it is what it says: the host's processes are in plain view
        assert "host-pids-0seen\r\n" in t.run(f"[ -e /proc/{os.getpid()} ] && echo host-pids-$((0))seen", "0seen\r\n")
    finally:
        k.shutdown()


def test_size_interrupt_and_exit(new_kernel):
    k = new_kernel()
    t = Term(k)
    t.read_until(PROMPT)
    assert "\r24 80\r\nsize-1" in t.run("stty size; echo size-$((1))", "size-1")
    t.send({"set_size": [40, 120, 600, 900]})  # JupyterLab adds the size in pixels
    assert "\r40 120\r\nsize-2" in t.run("stty size; echo size-$((2))", "size-2")
    # Ctrl-C interrupts the foreground command, not the shell
    t.run("echo start-$((1)); sleep 100; echo not-$((1))reached", "start-1\r\n")
    time.sleep(0.2)  # (sleep has started: bash forked it before start-1 came out... almost surely)
    t.type("\x03")
    assert "not-1reached" not in t.run("echo after-int $?", "after-int 130")
    t.type("exit 7\r")
    t.read_until("never printed")
    assert t.closed == {"exited": 7}


def test_a_terminal_works_while_a_cell_runs_and_several_are_apart(new_kernel, tmp_path):
    k = new_kernel()
    a, b = Term(k), Term(k)
    a.read_until(PROMPT)
    b.read_until(PROMPT)
    a.run("A=only-in-a; cd /", PROMPT)
    assert f"[{tmp_path}|]" in b.run('echo "[$PWD|$A]"', "|]")  # b has its own shell
    msg_id = k.kc.execute("sleep 60")
    a.run("echo while-$((1))cell", "while-1cell\r\n")
    with pytest.raises(queue.Empty):  # the cell is still running
        k.kc.get_shell_msg(timeout=0.2)
    k.km.interrupt_kernel()
    reply = k.kc.get_shell_msg(timeout=20)
    assert reply["parent_header"]["msg_id"] == msg_id and reply["content"]["status"] == "error"


def test_what_comes_while_the_shell_starts_is_kept(new_kernel):
    # JupyterLab sends the size, and a user may type, before the shell is up.
    k = new_kernel()
    t = Term(k)
    t.send({"set_size": [33, 99]})
    t.type("stty size; echo early-$((1))\r")
    assert "\r33 99\r\nearly-1" in t.read_until("early-1\r\n")


def _shells(kernel):
    """The terminals' shells among the kernel's processes (as the host sees them)."""
    found = []
    for pid in process_tree(kernel.pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read() == b"/bin/bash\0-i\0":
                    found.append(pid)
        except OSError:
            pass
    return found


def test_a_terminal_closed_at_once_leaves_nothing(new_kernel):
    k = new_kernel()
    Term(k).read_until(PROMPT)  # one up, so that the kernel's fds are counted with the channel open
    fds = len(os.listdir(f"/proc/{k.pid}/fd"))
    for _ in range(3):
        Term(k).close()  # before its shell has started
    last = Term(k)  # taken after those (one channel, in order): once it is up, they have been seen
    last.read_until(PROMPT)
    last.close()
    assert wait_until(lambda: len(_shells(k)) == 1, 10), _shells(k)
    assert wait_until(lambda: len(os.listdir(f"/proc/{k.pid}/fd")) == fds, 5)
    assert k.run("echo ok", timeout=20).stdout == "ok\n"


def _cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_reused_comm_id_is_ignored(new_kernel):
    k = new_kernel()
    t = Term(k)
    t.read_until(PROMPT)
    t._send("comm_open", {"comm_id": t.id, "target_name": TARGET, "data": {}})
    assert "again-1" in t.run("echo again-$((1))", "again-1\r\n")
    before = _cpu_seconds(k.pid)
    time.sleep(1)
    assert _cpu_seconds(k.pid) - before < 0.3  # the kernel is idle, not spinning on a stale reader
    assert len(_shells(k)) == 1


def test_a_flood_arrives_whole_and_paced(new_kernel):
    k = new_kernel()
    t = Term(k)
    t.read_until(PROMPT)
    started = time.monotonic()
    out = t.run("head -c 3000000 /dev/zero | tr '\\0' '\\170'; echo; echo flood-$((1+1))", "flood-2", timeout=60)
    printed = out.split("\n", 1)[1].split("flood-2")[0]  # after the echoed line
    assert printed.count("x") == 3000000, printed.replace("x", "")
    # at most one message per 10 ms, of at most 64 KiB (here the flood is faster than that)
    seconds = time.monotonic() - started
    assert t.messages <= seconds * 100 + 5, (t.messages, seconds)
    assert t.messages >= 3000000 / 65536


@pytest.mark.parametrize(
    "data, error",
    [
        ({"set_size": [0, 80]}, "set_size: rows and cols must be whole numbers from 1 to 1000"),
        ({"set_size": "big"}, "set_size: rows and cols must be whole numbers from 1 to 1000"),
        ({"stdin": 5}, 'terminal: expected {"stdin": text} or {"set_size": [rows, cols]}'),
        ({"stdin": "\ud800"}, "stdin: not valid text (a lone surrogate)"),
        ("junk", 'terminal: expected {"stdin": text} or {"set_size": [rows, cols]}'),
    ],
)
def test_bad_requests_get_one_line_and_the_terminal_goes_on(new_kernel, data, error):
    k = new_kernel()
    t = Term(k)
    t.read_until(PROMPT)
    # as JSON from a browser can have it: a lone surrogate, escaped
    k.kc.session.pack = lambda obj: json.dumps(obj, ensure_ascii=True, default=str).encode()
    t.send(data)
    t.run("echo still-$((0))here", "still-0here")
    assert t.errors == [error]


@pytest.mark.parametrize("data", [{"rows": "x"}, {"rows": 24, "cols": 100000}, {"rows": True, "cols": 80}])
def test_a_bad_size_at_open_is_refused_in_one_line(new_kernel, data):
    k = new_kernel()
    t = Term(k, data)
    t.read_until("never printed")
    assert t.closed == {"error": "terminal: rows and cols must be whole numbers from 1 to 1000"}
    assert k.run("echo ok").stdout == "ok\n"
