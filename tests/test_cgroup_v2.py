"""Memory, CPU and process limits on a cgroup v2 host, which this machine cannot show (it binds
every controller to v1): in a guest booted with cgroup v2 only (tests/vm.py), kernels start as
root and as a user in the cgroups a host gives them (one of their own, as `systemd-run --scope`
or a delegated unit does; one shared with another program; one not delegated), and the host's
view of the cgroups is checked from outside the kernel."""

import json
import os
import re

import pytest

from vm import REPO, run_in_vm

LIMIT = 64_000_000
# One guest runs every case: five kernels in a uniprocessor User-mode Linux, whose memory
# reclaim before an OOM kill takes seconds.
pytestmark = pytest.mark.timeout(600)
# Runs in the guest as root, with the controllers enabled at the top as systemd enables them.
GUEST = r"""
import json, os, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.join(REPO, "tests"))
from harness import Kernel, TEST_USER, ensure_test_user, user_dir

CG = "/sys/fs/cgroup"
ATTACK = '''
for f in $(find /sys/fs/cgroup -name 'memory.max' -o -name 'memory.high' -o -name 'cgroup.procs' -o -name 'pids.max' 2>/dev/null); do
  case $f in */cgroup.procs) v=$$ ;; *) v=max ;; esac
  (echo $v > "$f") 2>/dev/null && echo "WROTE $f"
done
mkdir /sys/fs/cgroup/escape 2>/dev/null && echo MADE
echo done'''
with open(f"{CG}/cgroup.subtree_control", "w") as f:
    f.write("+memory +cpu +pids")
user = ensure_test_user()


def cgroup(name, delegated_to=None):
    path = f"{CG}/{name}"
    os.mkdir(path)
    if delegated_to:  # what systemd's Delegate=yes hands over
        for entry in ("", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
            os.chown(os.path.join(path, entry), delegated_to.pw_uid, delegated_to.pw_gid)
    return path


def procs(path):
    with open(f"{path}/cgroup.procs") as f:
        return [int(p) for p in f.read().split()]


def scenario(flavor, path=None, stranger=False):
    start = time.monotonic()
    try:
        return _scenario(flavor, path, stranger)
    finally:
        print(f"{flavor} in {path or 'the top cgroup'}: {time.monotonic() - start:.1f} s", file=sys.stderr)


def _scenario(flavor, path, stranger):
    workspace = user_dir("sk-ws-") if flavor == "user" else tempfile.mkdtemp()
    prefix = ["sh", "-c", f'echo $$ > {path}/cgroup.procs && exec "$@"', "sh"] if path else []
    other = None
    if stranger:
        other = subprocess.Popen(["sleep", "600"])
        with open(f"{path}/cgroup.procs", "w") as f:
            f.write(str(other.pid))
    out = {}
    k = Kernel(workspace, options=[f"--Sandbox.max_memory_bytes={LIMIT}"], flavor=flavor, prefix=prefix)
    try:
        out["limits"] = next(l for l in k.run("%sandbox").stdout.splitlines() if l.startswith("limits:"))
        # The attack first: raise its own limit, or leave its cgroup, through any cgroup file it sees.
        out["attack"] = k.run(ATTACK).stdout
        out["hog"] = k.run("python3 -c 'x = bytearray(96 * 1024 * 1024)'; echo status $?").stdout
        out["alive"] = k.run("echo alive").stdout
        out["inside"] = k.run("cat /proc/self/cgroup").stdout
        base = path or CG
        out["kernel_pid"] = k.pid
        out["kernel_cgroup"] = open(f"/proc/{k.pid}/cgroup").read()
        out["sandboxes"] = {}
        for name in os.listdir(base):
            if name.startswith("sandbox-kernel-"):
                d = f"{base}/{name}"
                out["sandboxes"][name] = {key: open(f"{d}/{key}").read().strip() for key in ("memory.max", "cpu.weight", "pids.max")}
                out["sandboxes"][name]["procs"] = len(procs(d))
    finally:
        k.shutdown()
    out["left"] = sorted(n for n in os.listdir(path or CG) if n.startswith("sandbox-kernel-"))
    if other:
        out["stranger"] = [other.pid, open(f"/proc/{other.pid}/cgroup").read()]
        other.kill()
    return out


results = {
    "root, a cgroup of its own": scenario("root", cgroup("own")),
    "user, a delegated cgroup of its own": scenario("user", cgroup("delegated", user)),
    "user, a cgroup not delegated": scenario("user", cgroup("plain")),
    "root, a cgroup shared with another program": scenario("root", cgroup("shared"), stranger=True),
    "root, the top cgroup": scenario("root"),
}
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def guest():
    script = f"cd {REPO} && .venv/bin/python - <<'EOF'\nREPO = {REPO!r}\nLIMIT = {LIMIT}\n{GUEST}\nEOF\n"
    r = run_in_vm(script, timeout=500)
    assert r.returncode == 0, f"guest failed ({r.returncode}):\n{r.stderr[-3000:]}\n{r.console[-2000:]}"
    print(r.stderr)  # how long each case took
    return json.loads(r.stdout.strip().splitlines()[-1])


def _holds(out, where):
    assert f"{LIMIT} bytes of memory (cgroup)" in out["limits"] and "CPU weight 50%" in out["limits"], out["limits"]
    assert "cgroup pids" in out["limits"] and "not applied" not in out["limits"], out["limits"]
    assert out["attack"] == "done\n"  # no cgroup file of its own or above it written, no cgroup made
    assert out["hog"] == "status 137\n" and out["alive"] == "alive\n"  # the hog is killed, inside
    (name, sandbox), = out["sandboxes"].items()
    page = os.sysconf("SC_PAGE_SIZE")  # memory.max keeps whole pages
    assert sandbox["memory.max"] == str(LIMIT // page * page) and sandbox["cpu.weight"] == "50" and sandbox["procs"] >= 1, sandbox
    assert out["inside"] == f"0::/{name}\n"  # its own cgroup namespace, rooted where the kernel was
    assert out["kernel_cgroup"] == f"0::{where}\n"  # the kernel is not inside the sandbox's limits
    assert out["left"] == []  # removed with the sandbox


@pytest.mark.parametrize("case, flavor", [("root, a cgroup of its own", "own"), ("user, a delegated cgroup of its own", "delegated")])
def test_limits_hold_in_a_cgroup_of_the_kernels_own_moving_the_kernel_into_a_leaf(guest, case, flavor):
    _holds(guest[case], f"/{flavor}/kernel")


def test_limits_hold_for_a_root_kernel_in_the_top_cgroup(guest):
    _holds(guest["root, the top cgroup"], "/")


def test_a_cgroup_not_delegated_is_said_and_nothing_is_limited(guest):
    out = guest["user, a cgroup not delegated"]
    assert re.search(r"not applied: memory, cpu, pids: the kernel's cgroup /plain is not delegated to uid \d+$", out["limits"]), out["limits"]
    assert "bytes of memory" not in out["limits"] and out["sandboxes"] == {}
    assert out["hog"] == "status 0\n"  # said, and true: no limit


def test_another_programs_processes_are_never_moved_and_the_reason_is_said(guest):
    out = guest["root, a cgroup shared with another program"]
    pid, cgroup = out["stranger"]
    assert out["limits"].endswith(f"not applied: memory, cpu, pids: the kernel's cgroup /shared also holds other "
                                  f"programs (PID {pid}: sleep); start the kernel in a cgroup of its own"), out["limits"]
    assert cgroup == "0::/shared\n" and out["kernel_cgroup"] == "0::/shared\n"
    assert out["sandboxes"] == {} and out["hog"] == "status 0\n"
