"""The sandbox's first process: it starts bash sessions for the kernel, relays signals to them,
reaps every orphan, and takes every process of the sandbox down with it when the kernel goes.

It runs inside the sandbox, so every PID it reads or signals is one of the sandbox's own; the
kernel only ever names sessions, never PIDs. Standard library only: it starts with `python -I -S`.

Protocol on the fd named by argv[1] (a SOCK_SEQPACKET socket, one JSON object per packet); its
end (the kernel closing it, or dying) ends the sandbox:
  kernel -> here: {"op": "spawn", "id", "argv", "env", "cwd"} with the session's fds attached
                  (stdout, stderr, script, data, control), or with "terminal": [rows, cols] and
                  no fds (a shell on a terminal of the sandbox's own devpts);
                  {"op": "signal", "id", "what", "seq"} where what is "int", "term", "kill" (the
                  foreground command), "shell" (bash itself) or "end" (the whole process tree).
  here -> kernel: {"ev": "ready"} once built (with Sandbox.network=proxy, the proxy's listening
                  socket on the sandbox's loopback attached),
                  {"ev": "spawned", "id"} (a terminal's master attached),
                  {"ev": "spawn_failed", "id", "error"},
                  {"ev": "signalled", "seq"} once a signal request is carried out (or moot),
                  {"ev": "exited", "id", "status"} (exit code, or -N for signal N).
"""

import contextlib
import ctypes
import fcntl
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading

PR_SET_CHILD_SUBREAPER = 36
SESSION_FDS = 5  # stdout, stderr, script, data, control -> 1, 2, 3, 4, 5 in bash


def _prctl(option, value):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option})")


def _processes():
    """{pid: (ppid, pgid, sid, sigign)} for every process this sandbox can see."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
            with open(f"/proc/{entry}/status", "rb") as f:
                status = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        sigign = 0
        for line in status.splitlines():
            if line.startswith(b"SigIgn:"):
                sigign = int(line.split()[1], 16)
        table[int(entry)] = (int(fields[1]), int(fields[2]), int(fields[3]), sigign)
    return table


def _descendants(root, table):
    children = {}
    for pid, (ppid, _pgid, _sid, _ign) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill(pids, sig):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


class Supervisor:
    def __init__(self, control):
        self.control = control
        self.sessions = {}  # id -> bash pid
        self.ids = {}  # bash pid -> id

    def send(self, fds=(), **event):
        try:
            socket.send_fds(self.control, [json.dumps(event).encode()], list(fds))
        except OSError:
            pass

    def spawn(self, msg, fds):
        sid = str(msg["id"])
        terminal = msg.get("terminal")
        if sid in self.sessions or len(fds) != (0 if terminal else SESSION_FDS):
            for fd in fds:
                os.close(fd)
            self.send(ev="spawn_failed", id=sid, error="bad spawn request")
            return
        if terminal:
            rows, cols = terminal if isinstance(terminal, list) and len(terminal) == 2 else (0, 0)
            if not all(isinstance(n, int) and 0 < n < 10000 for n in (rows, cols)):
                self.send(ev="spawn_failed", id=sid, error=f"bad terminal size {terminal!r}")
                return
            try:
                master, tty = os.openpty()  # /dev/ptmx here is the sandbox's own devpts
            except OSError as e:
                self.send(ev="spawn_failed", id=sid, error=f"no terminal: {e.strerror}")
                return
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))  # (cannot fail)
            stdio = [tty, tty, tty]
        else:
            stdin_r, stdin_w = os.pipe()  # the write end closes at once: stdin is always at EOF
            os.close(stdin_w)
            stdio = [stdin_r, *fds]
        try:
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            try:
                pid = os.fork()
            except OSError:
                os.close(err_r)
                os.close(err_w)
                raise
        except OSError as e:  # out of processes or fds: this spawn fails, the sandbox goes on
            for fd in {*stdio, *fds, *([master] if terminal else [])}:
                os.close(fd)
            self.send(ev="spawn_failed", id=sid, error=f"cannot start: {e.strerror}")
            return
        if pid == 0:
            try:
                os.close(err_r)
                os.setsid()
                if terminal:
                    fcntl.ioctl(stdio[0], termios.TIOCSCTTY, 0)
                # bash adopts what its session double-forks, so the session's whole process
                # tree stays below it (the setting survives execve).
                _prctl(PR_SET_CHILD_SUBREAPER, 1)
                os.chdir(msg["cwd"])
                for target, fd in enumerate(stdio):
                    os.dup2(fd, target)
                os.closerange(len(stdio), err_w)
                os.closerange(err_w + 1, 65536)
                os.execve(msg["argv"][0], msg["argv"], msg["env"])
            except OSError as e:
                where = "cwd" if e.filename == msg["cwd"] else "exec"
                os.write(err_w, f"{where} {msg['cwd'] if where == 'cwd' else msg['argv'][0]}: {e.strerror}".encode())
            finally:
                os._exit(127)
        os.close(err_w)
        for fd in {*stdio, *fds}:
            os.close(fd)
        error = os.read(err_r, 4096).decode(errors="replace")
        os.close(err_r)
        if error:
            os.waitpid(pid, 0)
            if terminal:
                os.close(master)
            self.send(ev="spawn_failed", id=sid, error=error)
            return
        self.sessions[sid] = pid
        self.ids[pid] = sid
        self.send(ev="spawned", id=sid, fds=[master] if terminal else ())
        if terminal:
            os.close(master)

    def signal(self, msg):
        pid = self.sessions.get(str(msg.get("id")))
        what = msg.get("what")
        if pid is None:
            return
        if what == "int":
            _kill_group(pid, signal.SIGINT)
        elif what in ("term", "kill"):
            # The foreground command: bash's process group minus bash itself and its background
            # jobs, which bash starts with SIGINT and SIGQUIT ignored (no job control).
            both = (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGQUIT - 1))
            table = _processes()
            targets = [p for p, (_pp, pg, _s, ign) in table.items() if pg == pid and p != pid and ign & both != both]
            _kill(targets, signal.SIGTERM if what == "term" else signal.SIGKILL)
        elif what == "shell":
            _kill([pid], signal.SIGKILL)
        elif what == "end":
            self.end_tree(pid)

    def end_tree(self, pid):
        """SIGKILL bash and its descendants (it is their subreaper, so daemons are among them),
        then the orphans of shells that already ended, until none is left."""
        for _ in range(50):
            table = _processes()
            targets = set(_descendants(pid, table)) | self._orphans(table)
            if pid in table:
                targets.add(pid)
            if not targets:
                return
            _kill(targets, signal.SIGKILL)
            self.reap()

    def _orphans(self, table):
        """Processes reparented to the supervisor when their session's bash ended, and theirs."""
        me = os.getpid()
        found = set()
        for p, (ppid, _pg, _s, _i) in table.items():
            if ppid == me and p not in self.ids:
                found.add(p)
                found.update(_descendants(p, table))
        return found

    def reap(self):
        ended = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            sid = self.ids.pop(pid, None)
            if sid is not None:
                del self.sessions[sid]
                ended.append((sid, pid, os.waitstatus_to_exitcode(status)))
        for sid, pid, code in ended:
            # Like closing a terminal: what the shell left running goes with it.
            self.end_tree(pid)
            self.send(ev="exited", id=sid, status=code)

    def teardown(self):
        for _ in range(50):
            targets = _descendants(os.getpid(), _processes())
            if not targets:
                return
            _kill(targets, signal.SIGKILL)
            self.reap()

    def run(self):
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: None)
        while True:
            ready, _, _ = select.select([self.control, wake_r], [], [])
            if wake_r in ready:
                while True:
                    try:
                        if not os.read(wake_r, 256):
                            break
                    except BlockingIOError:
                        break
                self.reap()
            if self.control in ready:
                try:
                    data, fds, _flags, _addr = socket.recv_fds(self.control, 1 << 20, 16)
                except OSError:
                    data, fds = b"", []
                if not data:
                    self.teardown()
                    return
                try:
                    msg = json.loads(data)
                    if msg["op"] == "spawn":
                        self.spawn(msg, fds)
                    elif msg["op"] == "signal":
                        try:
                            self.signal(msg)
                        finally:
                            self.send(ev="signalled", seq=msg.get("seq"))
                except (ValueError, KeyError, TypeError) as e:
                    for fd in fds:
                        os.close(fd)
                    self.send(ev="error", error=f"bad request: {e}")


def _kill_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def enter_sandbox(plan, control):
    """Build the sandbox of the plan and return in its first process (PID 1 inside).

    Three processes take part: this one (the kernel's child, outside), A (enters the new
    namespaces; its maps must be written from outside, so that uid 0 inside can be an
    unprivileged uid outside), and B, A's child and the first process of the new PID namespace,
    which applies the mounts and limits, drops every capability and returns. This process and A
    only wait, and end when the sandbox ends (which is when B ends).
    """
    if plan["as_root"]:
        try:
            os.setgroups([])  # a kernel started after su or sudo keeps group 0 otherwise
        except PermissionError:
            pass  # root of a user namespace that denies it: %sandbox lists the groups that stay
    sync, sync_a = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    alive_r, alive_w = os.pipe()  # A holds the write end: the egress helper ends with the sandbox
    a = os.fork()
    if a == 0:
        sync.close()
        os.close(alive_r)
        try:
            isolation.unshare(plan["namespaces"])
            sync_a.send(b"unshared")
            message, fds, _f, _a = socket.recv_fds(sync_a, 64, 16)
            if not message.startswith(b"mapped"):
                os._exit(1)
            plan["egress_ok"] = message == b"mapped+egress"
            isolation.become(plan["inside_uid"], plan["inside_gid"])
        except Exception as e:  # noqa: BLE001
            control.send(json.dumps({"ev": "failed", "error": _reason(e, "entering the namespaces")}).encode())
            os._exit(1)
        b = os.fork()
        if b == 0:
            try:
                _apply_steps(plan, dict(zip(_taken_outside(plan), fds)))
            except Exception as e:  # noqa: BLE001
                control.send(json.dumps({"ev": "failed", "error": _reason(e, "building the sandbox")}).encode())
                os._exit(1)
            sync_a.close()
            return
        for fd in fds:
            os.close(fd)
        _wait_and_exit(b, keep=[alive_w])
    sync_a.close()
    os.close(alive_w)
    guard = None
    try:
        if sync.recv(64) != b"unshared":
            _wait_and_exit(a, keep=[])
        isolation.write_id_maps(a, plan["uid_map"], plan["gid_map"])
        fds = [isolation.idmapped_tree(path, _idmap_userns(plan["workspace_idmap"])) if path == plan["shared"]
               else isolation.clone_tree(path) for path in _taken_outside(plan)]
        egress, guard = _start_egress(plan["egress"], a, alive_r, plan["as_root"]) if plan["egress"] else ("not asked for", None)
        limits = plan["limits"]
        cgroups, holds, errors = isolation.limit_with_cgroups(a, f"sandbox-kernel-{os.getpid()}", limits["memory_bytes"],
                                                              limits["cpu_percent"], limits["max_processes"])
        control.send(json.dumps({"ev": "outside", "egress": egress, "cgroups": holds, "cgroup_errors": errors,
                                 "groups": os.getgroups()}).encode())
        socket.send_fds(sync, [b"mapped+egress" if egress == "ok" else b"mapped"], fds)
        for fd in fds:
            os.close(fd)
    except Exception as e:  # noqa: BLE001
        control.send(json.dumps({"ev": "failed", "error": _reason(e, "outside the sandbox")}).encode())
        os.kill(a, signal.SIGKILL)
        cgroups = []
    _wait_and_exit(a, keep=[], then=lambda: isolation.remove_cgroups(cgroups), guard=guard)


def _reason(error, where):
    """A step's IsolationError names the step; anything else says where it happened."""
    return str(error) if isinstance(error, isolation.IsolationError) else f"{where}: {type(error).__name__}: {error}"


def _start_egress(slirp4netns, pid, alive_fd, as_root):
    """User-mode networking for the sandbox's network namespace (the namespace of pid): NAT to
    the outside, and no way to the host itself (--disable-host-loopback, and egress_guard.py for
    its own and link-local addresses). It parses the sandbox's packets, so it runs under its
    seccomp filter and, as root, in a sandbox of its own (an empty root, no capabilities but
    CAP_NET_BIND_SERVICE; an unprivileged user's cannot be made: it needs uid 0 mapped in the
    sandbox's user namespace). 'ok' and its guard, or why not and None."""
    ready_r, ready_w = os.pipe()
    # The guard's filter holds the child's sendmsg from the moment it is on, so its listener
    # cannot be sent: the child says its pid and the fd's number down a pipe and waits while this
    # process takes a copy (pidfd_getfd), in a thread, as Popen returns only at the exec.
    told_r, told_w = os.pipe()
    taken_r, taken_w = os.pipe()

    def confine():
        try:
            if as_root:
                # Its sandbox makes / private but not what lies below it, then detaches the old
                # root: from the host's mount namespace that unmounts, on the host, every mount
                # whose parent is shared (an `ip netns add` handle, and more where systemd makes
                # every mount shared). It starts in a mount namespace of its own, all private.
                isolation.unshare(["mount"])
                isolation.make_mounts_private()
            os.write(told_w, b"+" + struct.pack("ii", os.getpid(), isolation.hold_sends_for_review()))
        except Exception as e:  # noqa: BLE001  (Popen would only say "Exception occurred in preexec_fn")
            os.write(told_w, b"-" + str(e).encode()[:400])
            raise
        if os.read(taken_r, 1) != b"1":
            raise OSError("the supervisor could not take the guard's listener")

    taken = {}

    def take():
        told = os.read(told_r, 512)  # nothing if the child ended first
        try:
            if told[:1] == b"+":
                child, number = struct.unpack("ii", told[1:9])
                taken["listener"] = isolation.take_fd(child, number)
                with open(f"/proc/{child}/mem", "rb"):  # what the guard reads each held call's address from
                    pass
            else:
                taken["error"] = told[1:].decode(errors="replace") or "its child ended"
        except Exception as e:  # noqa: BLE001
            taken["error"] = str(e)
        os.write(taken_w, b"1" if "listener" in taken else b"0")

    taker = threading.Thread(target=take)
    taker.start()
    try:
        helper = subprocess.Popen(
            [slirp4netns, "--configure", "--mtu=65520", "--disable-host-loopback", "--enable-seccomp",
             *(["--enable-sandbox"] if as_root else []), "--exit-fd", str(alive_fd),
             "--ready-fd", str(ready_w), str(pid), "tap0"],
            pass_fds=(alive_fd, ready_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True, preexec_fn=confine,
        )
    except (OSError, subprocess.SubprocessError) as e:
        helper = None
        failure = f"the egress guard: {taken['error']}" if "error" in taken else f"{slirp4netns}: {getattr(e, 'strerror', None) or e}"
    finally:
        os.close(told_w)
        taker.join()
        for fd in (ready_w, told_r, taken_r, taken_w):
            os.close(fd)
    if helper is None:
        if "listener" in taken:
            os.close(taken["listener"])
        os.close(ready_r)
        return failure, None
    # Started at once: slirp4netns sets its tap device up through netlink, and those calls are held too.
    guard = egress_guard.Guard(
        taken["listener"], isolation.sending_calls(),
        lambda address, port: network_policy.outbound_refusal(address, port, egress_guard.resolvers() if port == 53 else set()))
    ready, _, _ = select.select([ready_r], [], [], 5)
    ok = ready and os.read(ready_r, 1) == b"1"
    os.close(ready_r)
    if ok:
        helper.stderr.close()
        return "ok", guard
    helper.kill()
    error = helper.communicate()[1].decode(errors="replace").strip().splitlines()
    guard.thread.join(5)  # it ends when slirp4netns has: then its listener can go
    os.close(guard.listener)
    return f"slirp4netns failed: {error[-1] if error else 'no reason given'}", None


def _idmap_userns(maps):
    """A user namespace that exists only to lend its id maps to the workspace mount."""
    ready_r, ready_w = os.pipe()  # the child says when it is in its namespace (or that it failed)
    release_r, release_w = os.pipe()  # and waits until its maps are written and its namespace held
    child = os.fork()
    if child == 0:
        os.close(ready_r)
        os.close(release_w)
        try:
            isolation.unshare(["user"])
            os.write(ready_w, b"1")
        finally:
            os.close(ready_w)  # on failure, the parent reads end-of-file
            os.read(release_r, 1)
            os._exit(0)
    os.close(ready_w)
    os.close(release_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise isolation.IsolationError("a user namespace for the idmapped workspace: unshare failed")
        isolation.write_id_maps(child, maps["uid_map"], maps["gid_map"])
        return os.open(f"/proc/{child}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(release_w)
        os.waitpid(child, 0)


def _taken_outside(plan):
    """The trees this process clones for B: as root, all of them (the shared directory idmapped,
    so that it stays writable; B, an unprivileged uid outside, may not even reach the others,
    e.g. under /root); otherwise none."""
    return [args[0] for step, *args in plan["steps"] if step == "take"] if plan["as_root"] else []


def _apply_steps(plan, from_outside):
    """In B: every mount, limit and drop of the plan, in its order. A step that fails for any
    reason fails the sandbox with the step's name."""
    taken = {}
    for step, *args in plan["steps"]:
        try:
            if step == "take":
                taken[args[0]] = from_outside[args[0]] if args[0] in from_outside else isolation.clone_tree(args[0])
            elif step == "attach":
                isolation.attach(taken.pop(args[0]), *args)
            elif step == "resolv_conf" and not plan.get("egress_ok"):
                continue
            else:
                getattr(isolation, step)(*args)
        except isolation.IsolationError:
            raise
        except Exception as e:  # noqa: BLE001  (reported, never a bare "supervisor ended")
            raise isolation.IsolationError(f"{step} {' '.join(map(str, args))[:200]}: {type(e).__name__}: {e}") from None


def _wait_and_exit(pid, keep, then=None, guard=None):
    """Outside processes: end with the sandbox (and clean up after it); the egress guard keeps
    its listener, and the fds it has open while it answers a call."""
    with guard.busy if guard else contextlib.nullcontext():
        for fd in range(3, 1024):
            if fd not in keep and not (guard and fd == guard.listener):
                try:
                    os.close(fd)
                except OSError:
                    pass
    while True:
        try:
            _pid, status = os.waitpid(pid, 0)
        except ChildProcessError:
            status = 0
        except InterruptedError:
            continue
        if then is not None:
            then()
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def _proxy_listener(port):
    """The proxy's socket on the sandbox's loopback, made before any cell runs; the kernel serves
    it from outside (egress_proxy.py), so the sandbox needs no route out."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", port))
    s.listen(128)
    return s


def main():
    # The kernel may run with SIGINT ignored (ipykernel does); sessions need the defaults.
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    control = socket.socket(fileno=int(sys.argv[1]))
    plan = json.loads(control.recv(1 << 20))
    if plan is not None:
        try:
            enter_sandbox(plan, control)
        except Exception as e:  # noqa: BLE001  (the kernel is told why, never just a status)
            control.send(json.dumps({"ev": "failed", "error": _reason(e, "starting the sandbox")}).encode())
            os._exit(1)
    # Orphans (double-forked daemons) become ours, so that teardown can find them. The kernel
    # going away, even by SIGKILL, closes the control socket, and that starts the teardown.
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    listener = []
    if plan is not None and plan.get("proxy_port"):
        try:
            listener = [_proxy_listener(plan["proxy_port"])]
        except OSError as e:
            control.send(json.dumps({"ev": "failed", "error": f"the proxy's port 127.0.0.1:{plan['proxy_port']}: {e.strerror}"}).encode())
            os._exit(1)
    socket.send_fds(control, [json.dumps({"ev": "ready", "pid": os.getpid()}).encode()], [s.fileno() for s in listener])
    for s in listener:
        s.close()
    Supervisor(control).run()


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves it out
    import egress_guard
    import isolation
    import network_policy

    main()
