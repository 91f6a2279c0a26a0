"""The sandbox holds wherever the notebook lives: a matrix of the layouts people have (a project
under HOME, HOME itself, /tmp, /, the directory holding the kernel's venv, the directory holding
Jupyter's runtime dir), each with the kernel as root and as an unprivileged user, beside a HOME laid
out like a real one: Jupyter's dirs at their default places (no JUPYTER_* variable), credentials,
shell start-up files, a git repository, and host sockets and a pty the test holds open. Every
attack is made from a cell; the host is checked from outside afterwards."""

import hashlib
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import tempfile

import pytest

from harness import USER_VENV_PYTHON, Kernel, ensure_test_user
from test_terminal import Term

SANDBOX_UID = 1_960_000_000  # Sandbox.sandbox_uid's default: the root flavour's uid outside

# Files of a real HOME: (path below HOME, holds the secret). Start-up files and Jupyter's config
# are what the host runs later; the rest are credentials.
HOME_FILES = [
    (".bashrc", False), (".profile", False), (".ssh/id_ed25519", True), (".ssh/authorized_keys", False),
    (".aws/credentials", True), (".netrc", True), (".git-credentials", True), (".config/gh/hosts.yml", True),
    (".kube/config", True), (".jupyter/jupyter_server_config.py", True),
    (".local/share/jupyter/runtime/jpserver-4242.json", True), (".local/share/jupyter/notebook_secret", True),
    (".local/share/jupyter/nbsignatures.db", True), (".local/share/jupyter/kernels/python3/kernel.json", False),
    (".ipython/profile_default/startup/README", False), (".config/autostart/.keep", False),
    (".config/systemd/user/.keep", False), (".local/lib/python3.11/site-packages/.keep", False),
]

KERNEL_OWN = tuple(f".ipython/profile_default/{d}" for d in ("log", "pid", "security"))

# What a cell tries against what the host runs later; relative to HOME (written as ~/...).
PLANTS = [
    "echo planted >> ~/.bashrc", "echo planted >> ~/.profile", "echo planted >> ~/.ssh/authorized_keys",
    "echo '{\"argv\": [\"sh\"]}' > ~/.local/share/jupyter/kernels/python3/kernel.json",
    "echo planted > ~/.jupyter/jupyter_server_config.py",
    "echo planted > ~/.ipython/profile_default/startup/00-planted.py",
    "echo 'import os' > ~/.local/lib/python3.11/site-packages/planted.pth",
    "echo planted > ~/.config/autostart/planted.desktop", "echo planted > ~/.config/systemd/user/planted.service",
    "echo planted > ~/project/.git/hooks/pre-commit", "echo '[core] fsmonitor = sh' >> ~/project/.git/config",
    "rm -rf ~/project/.git/hooks", "mv ~/project/.git ~/project/.git-moved",
]


def _owner(flavor):
    return ensure_test_user() if flavor == "user" else pwd.getpwuid(0)


class HostHome:
    """A HOME with real dotfiles, credentials and Jupyter's dirs, a git repository in ~/project,
    and host sockets (tmux, ssh-agent, a bus in XDG_RUNTIME_DIR) and a pty, held by the test."""

    def __init__(self, flavor, path=None):
        """path: an empty directory to lay it out in (one the test made the account's home)."""
        self.flavor = flavor
        self.owner = _owner(flavor)
        self.secret = f"s3cret-{secrets.token_hex(8)}"
        self.path = path or tempfile.mkdtemp(prefix=f"sk-{flavor}-home-", dir="/home")
        os.chmod(self.path, 0o700)
        for rel, secret in HOME_FILES:
            full = os.path.join(self.path, rel)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w") as f:
                f.write(f"token = {self.secret}\n" if secret else "# the user's own\n")
        self.project = os.path.join(self.path, "project")
        os.makedirs(self.project)
        # A project outside HOME in a directory only its owner may search (a root's /srv/data):
        # the sandbox's uid outside, as root, cannot.
        self.closed = tempfile.mkdtemp(prefix=f"sk-{flavor}-closed-", dir="/srv")
        self.closed_project = os.path.join(self.closed, "project")
        os.makedirs(self.closed_project)
        for d in (self.closed, self.closed_project):
            os.chown(d, self.owner.pw_uid, self.owner.pw_gid)
        subprocess.run(["git", "init", "-q", self.project], check=True)
        with open(os.path.join(self.project, "notebook.ipynb"), "w") as f:
            f.write("{}\n")
        for top, dirs, files in os.walk(self.path):
            for name in [top, *(os.path.join(top, n) for n in dirs + files)]:
                os.lchown(name, self.owner.pw_uid, self.owner.pw_gid)
        self.run_as = ["setpriv", f"--reuid={self.owner.pw_uid}", f"--regid={self.owner.pw_gid}", "--clear-groups", "--"]
        uid = self.owner.pw_uid
        # Sockets where a user's machine has them, named so as never to clash with real ones.
        tag = secrets.token_hex(4)
        self.tmux = ["tmux", "-L", f"sk-test-{tag}"]
        subprocess.run([*self.run_as, *self.tmux, "new-session", "-d", "sleep 600"], check=True, env=self._env())
        self.tmux_socket = f"/tmp/tmux-{uid}/sk-test-{tag}"
        self.agent_dir = tempfile.mkdtemp(prefix="ssh-", dir="/tmp")
        os.chown(self.agent_dir, uid, self.owner.pw_gid)
        self.agent_socket = f"{self.agent_dir}/agent.{tag}"
        self.agent = subprocess.Popen([*self.run_as, "ssh-agent", "-D", "-a", self.agent_socket],
                                      stdout=subprocess.DEVNULL, env=self._env())
        self.xdg = f"/run/user/{uid}"
        self.made_xdg = not os.path.isdir(self.xdg)
        os.makedirs(self.xdg, mode=0o700, exist_ok=True)
        os.chown(self.xdg, uid, self.owner.pw_gid)
        self.bus_socket = f"{self.xdg}/sk-bus-{tag}"
        self.bus = socket.socket(socket.AF_UNIX)
        self.bus.bind(self.bus_socket)
        self.bus.listen()
        os.chown(self.bus_socket, uid, self.owner.pw_gid)
        self.pty_master, slave = os.openpty()
        self.pty = os.ttyname(slave)
        os.close(slave)
        os.chown(self.pty, uid, -1)
        for path in (self.tmux_socket, self.agent_socket):
            assert _wait_for(path), f"{path} did not appear"

    def _env(self):
        return {"PATH": os.environ["PATH"], "HOME": self.path}

    def kernel_env(self):
        """The kernel's environment as a server of this user's would pass it: no JUPYTER_*."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "JPY"))}
        env.update(HOME=self.path, XDG_RUNTIME_DIR=self.xdg, SSH_AUTH_SOCK=self.agent_socket, USER=self.owner.pw_name)
        return env

    def snapshot(self):
        """Every file and directory below HOME: (kind, mode, owner, digest), seen from the host;
        but the profile dirs that the kernel process itself (outside, as every ipykernel) keeps."""
        found = {}
        for top, dirs, files in os.walk(self.path):
            for name in dirs + files:
                full = os.path.join(top, name)
                if os.path.relpath(full, self.path).startswith(KERNEL_OWN):
                    continue
                st = os.lstat(full)
                digest = ""
                if stat.S_ISREG(st.st_mode):
                    with open(full, "rb") as f:
                        digest = hashlib.sha256(f.read()).hexdigest()
                found[os.path.relpath(full, self.path)] = (stat.S_IFMT(st.st_mode), st.st_mode & 0o7777, st.st_uid, digest)
        return found

    def close(self):
        subprocess.run([*self.run_as, *self.tmux, "kill-server"], env=self._env(), capture_output=True)
        self.agent.kill()
        self.agent.wait()
        self.bus.close()
        os.close(self.pty_master)
        os.unlink(self.bus_socket)
        if self.made_xdg:
            shutil.rmtree(self.xdg, ignore_errors=True)
        shutil.rmtree(self.agent_dir, ignore_errors=True)
        shutil.rmtree(self.path, ignore_errors=True)
        shutil.rmtree(self.closed, ignore_errors=True)


def _wait_for(path, seconds=10):
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        time.sleep(0.05)
    return False


def _venv_holder(flavor):
    """The directory that holds the venv the kernel runs from."""
    python = sys.executable if flavor == "root" else USER_VENV_PYTHON
    return os.path.dirname(os.path.dirname(os.path.dirname(python)))


# layout -> (where the notebook is, whether it is shared read-write)
LAYOUTS = {
    "project under HOME": (lambda home, flavor: home.project, True),
    "HOME itself": (lambda home, flavor: home.path, False),
    "/tmp": (lambda home, flavor: "/tmp", False),
    "/": (lambda home, flavor: "/", False),
    "the venv's directory": (lambda home, flavor: _venv_holder(flavor), True),
    "the runtime dir's parent": (lambda home, flavor: os.path.join(home.path, ".local", "share"), False),
    "a directory only its owner may search": (lambda home, flavor: home.closed_project, True),
}


def _probe(home, workspace):
    secret_files = [os.path.join(home.path, rel) for rel, secret in HOME_FILES if secret]
    views = " ".join(f'"{p}" "/proc/self/root{p}" "/proc/1/root{p}"' for p in secret_files)
    search = " ".join(f'"{d}"' for d in [home.path, "/home", "/tmp", "/var/tmp", "/run", "/dev/shm", *([workspace] if workspace != "/" else [])])
    sockets = " ".join(f'"{p}"' for p in (home.tmux_socket, home.agent_socket, home.bus_socket))
    return f"""cat {views} 2>/dev/null
echo files:; grep -rlD skip --exclude-dir=.pyenv -- {home.secret} {search} 2>/dev/null; echo end-files
{chr(10).join(p.replace("~", home.path) for p in PLANTS)}
python3 - {sockets} <<'EOF'
import socket, sys
for path in sys.argv[1:]:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path); print("CONNECTED", path)
    except OSError as e:
        print("refused", e.errno)
EOF
(exec 3<>{home.pty} && echo OPENED-PTY) 2>/dev/null
SSH_AUTH_SOCK={home.agent_socket} ssh-add -l 2>&1 | grep -q 'no identities' && echo AGENT-ANSWERED
{" ".join(home.tmux)} list-sessions 2>/dev/null && echo TMUX-ANSWERED
ls /dev/pts
true"""


@pytest.fixture(scope="module", params=["root", "user"])
def host_home(request):
    home = HostHome(request.param)
    yield home
    home.close()


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_the_sandbox_holds_wherever_the_notebook_lives(host_home, layout):
    home, flavor = host_home, host_home.flavor
    where, shared = LAYOUTS[layout]
    workspace = where(home, flavor)
    before = home.snapshot()
    scratch = ("/tmp", "/var/tmp", "/dev/shm")
    host_tmp = {d: set(os.listdir(d)) for d in scratch}
    k = Kernel(workspace, env=home.kernel_env(), flavor=flavor, home=home.path)
    try:
        status = k.run("%sandbox").stdout
        facts = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        assert facts["isolation"].strip().startswith("isolated"), status
        notebook = facts["notebook dir"].strip()
        assert notebook.startswith(f"{os.path.realpath(workspace)}: {'shared read-write' if shared else 'not shared'}"), notebook
        if not shared:
            # The first cell says so, and how to get a writable workspace.
            assert "not shared" in k.first.stderr and "Sandbox.shared_directory" in k.first.stderr, k.first.stderr

        r = k.run(_probe(home, workspace), timeout=120)
        out = r.stdout
        assert home.secret not in out + r.stderr
        assert out.split("files:\n", 1)[1].startswith("end-files\n"), out  # no readable file holds it
        assert "CONNECTED" not in out and out.count("refused") == 3, out
        assert "OPENED-PTY" not in out and "AGENT-ANSWERED" not in out and "TMUX-ANSWERED" not in out, out
        assert out.rstrip().splitlines()[-1] == "ptmx", out  # a devpts of the sandbox's own

        # A terminal into the sandbox sees what the cells see, from where they start.
        cell_pwd = k.run("pwd").stdout
        k.run(f"cat > /tmp/probe.sh <<'END-OF-PROBE'\n{_probe(home, workspace)}\nEND-OF-PROBE")
        t = Term(k)
        t.run("bash /tmp/probe.sh > /tmp/term-probe.out 2>/dev/null; pwd > /tmp/term-pwd; echo probe-$((1))done", "probe-1done", 120)
        again = k.run(_probe(home, workspace), timeout=120).stdout  # (now /dev/pts has the terminal's pty too)
        r = k.run("cat /tmp/term-pwd /tmp/term-probe.out")
        assert r.stdout == cell_pwd + again, (r.stdout, again)
        t.close()

        # Every claim of %sandbox holds: masks are empty and refuse writes, / refuses writes.
        masked = [p.strip() for p in facts["masked paths"].split(",") if p.strip() not in ("", "none")]
        checks = "\n".join(f'[ -z "$(ls -A {p} 2>/dev/null)" ] || echo SHOWS {p}; touch {p}/x 2>/dev/null && echo WROTE {p}'
                           for p in masked)
        r = k.run(f"{checks}\ntouch /planted 2>/dev/null && echo WROTE /; true")
        assert "SHOWS" not in r.stdout and "WROTE" not in r.stdout, r.stdout

        if shared:
            r = k.run("echo from-inside > made-inside && cat made-inside")
            if flavor == "root" or os.stat(workspace).st_uid == home.owner.pw_uid:  # else not the user's to write
                assert r.stdout == "from-inside\n", r.stderr
                made = os.path.join(workspace, "made-inside")
                assert open(made).read() == "from-inside\n"
                assert os.stat(made).st_uid == os.stat(workspace).st_uid  # the directory's owner's
                os.unlink(made)
        else:
            r = k.run("pwd; echo private > made-inside && cat made-inside")
            assert r.stdout.splitlines()[-1] == "private" or "Read-only file system" in r.stderr, (r.stdout, r.stderr)
            assert not os.path.exists(os.path.join(workspace, "made-inside"))
    finally:
        k.shutdown()
    # From the host afterwards: nothing the host runs has changed, no scratch file appeared.
    after = home.snapshot()
    changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    assert not changed, sorted(changed)
    # (Other programs may add files to /tmp meanwhile: what counts is the sandbox's uid outside.)
    sandbox_uid = SANDBOX_UID if flavor == "root" else home.owner.pw_uid
    left = [os.path.join(d, n) for d in scratch for n in set(os.listdir(d)) - host_tmp[d]
            if not n.startswith(("sk-conn-", "sk-spec-")) and (os.lstat(os.path.join(d, n)).st_uid == sandbox_uid or n.startswith(".sandbox"))]
    assert not left, left
