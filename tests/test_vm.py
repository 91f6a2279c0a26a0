"""The cgroup-v2 guest of tests/vm.py, through real guests: what it is, that it cannot write to
this machine, and that the sandbox kernel runs in it as root and as a user."""

import json
import os
import secrets
import sys

import pytest

from harness import ensure_test_user, processes_named
import vm

TESTS = os.path.dirname(os.path.abspath(__file__))


def test_the_guest_has_cgroup_v2_only_with_memory_cpu_and_pids():
    r = vm.run_in_vm("""
        stat -fc %T /sys/fs/cgroup
        cat /sys/fs/cgroup/cgroup.controllers
        grep -c ' cgroup ' /proc/mounts
        echo +memory +cpu +pids > /sys/fs/cgroup/cgroup.subtree_control
        cat /sys/fs/cgroup/cgroup.subtree_control
    """, timeout=60)
    fstype, controllers, v1_mounts, enabled = r.stdout.splitlines()
    assert fstype == "cgroup2fs"
    assert {"memory", "cpu", "pids"} <= set(controllers.split())
    assert v1_mounts == "0"
    assert {"memory", "cpu", "pids"} <= set(enabled.split())
    assert r.returncode == 0, r.stderr


def test_the_guest_enforces_memory_pids_and_cpu_limits():
    """What the limits tests rely on: a cgroup's cpu.max throttles, pids.max refuses forks,
    memory.max OOM-kills (after reclaim, which takes seconds in UML)."""
    r = vm.run_in_vm("""
        cg=/sys/fs/cgroup
        echo +memory +cpu +pids > $cg/cgroup.subtree_control && mkdir $cg/cpu $cg/pids $cg/mem
        echo "10000 100000" > $cg/cpu/cpu.max; echo 3 > $cg/pids/pids.max; echo 64M > $cg/mem/memory.max
        in_cg() { sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cg/$@"; }
        in_cg cpu timeout 1 sh -c 'while :; do :; done'
        awk '$1 == "usage_usec" || $1 == "nr_throttled" {print $1, $2}' $cg/cpu/cpu.stat
        in_cg pids sh -c 'for i in 1 2 3 4; do sleep 1 & done; wait' 2>/dev/null; echo "forks: $?"
        grep max $cg/pids/pids.events
        in_cg mem python3 -c 'bytearray(256 << 20)' 2>/dev/null; echo "python: $?"
        grep oom_kill $cg/mem/memory.events
    """, timeout=60)
    values = dict(line.rsplit(" ", 1) for line in r.stdout.splitlines())
    assert int(values["usage_usec"]) < 600_000 and int(values["nr_throttled"]) > 0, r.stdout
    assert values["forks:"] == "2" and int(values["max"]) > 0, r.stdout
    assert values["python:"] == "137" and values["oom_kill"] == "1", r.stdout


def test_the_scripts_stdout_stderr_and_exit_status_come_back_apart_from_the_kernels_messages():
    r = vm.run_in_vm("printf 'out\\0put\\n'; echo err >&2; echo $(id -u) $PWD; exit 7", timeout=60)
    assert (r.returncode, r.stdout, r.stderr, r.timed_out) == (7, "out\0put\n0 /root\n", "err\n", False)
    assert 0 < r.boot_seconds < r.seconds


def test_the_guest_cannot_write_to_this_machine():
    probe = f"vm-probe-{secrets.token_hex(4)}"
    target = os.path.join(os.path.dirname(TESTS), probe)
    # A write to the host's path lands in the guest's overlay; a write through a hostfs mount of
    # its own reaches the host's file system, which is read-only there.
    r = vm.run_in_vm(f"""
        echo inside > {target} && cat {target}
        mount -t hostfs none /mnt -o / && ls /mnt{os.path.dirname(TESTS)} >/dev/null
        echo through > /mnt{target}
        echo "hostfs write: $?"
    """, timeout=60)
    assert r.stdout == "inside\nhostfs write: 1\n", r.stderr
    assert "Read-only file system" in r.stderr
    assert not os.path.exists(target)


def test_a_guest_past_its_timeout_is_killed_and_says_so():
    r = vm.run_in_vm("sleep 600", timeout=5)
    assert (r.timed_out, r.returncode) == (True, None)
    assert r.boot_seconds is not None and 5 <= r.seconds < 12
    assert processes_named(vm.UML_TREE) == []


def test_without_the_guest_kernel_it_fails_saying_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(vm, "UML_TREE", str(tmp_path))
    with pytest.raises(vm.VMError, match="run `make vm-kernel`"):
        vm.run_in_vm("true")


def kernel_in_guest(flavor):
    """In a guest: start the sandbox kernel as the suite does (tests/harness.py), run a cell and
    %sandbox; what came back, as JSON."""
    if flavor == "user":
        ensure_test_user()  # on the host: the guest sees its /etc/passwd
    r = vm.run_in_vm(f"""
        cd {TESTS}
        {sys.executable} - <<'EOF'
import json, tempfile
import harness
k = harness.Kernel(harness.user_dir("sk-ws-") if "{flavor}" == "user" else tempfile.mkdtemp(), flavor="{flavor}")
try:
    cell, info = k.run("echo hello; id -u"), k.run("%sandbox")
    print(json.dumps({{"notice": k.first.stdout + k.first.stderr, "stdout": cell.stdout, "stderr": cell.stderr,
                      "status": cell.status, "sandbox": info.stdout}}))
finally:
    k.shutdown()
EOF
    """, timeout=100)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[-1])


def test_the_sandbox_kernel_runs_in_the_guest_as_root():
    k = kernel_in_guest("root")
    assert (k["notice"], k["stdout"], k["stderr"], k["status"]) == ("", "hello\n0\n", "", "ok")
    assert "isolated" in k["sandbox"]
    assert "outbound through slirp4netns" in k["sandbox"]


def test_the_sandbox_kernel_runs_in_the_guest_as_a_user():
    uid = ensure_test_user().pw_uid
    k = kernel_in_guest("user")
    assert (k["notice"], k["stdout"], k["stderr"], k["status"]) == ("", f"hello\n{uid}\n", "", "ok")
    assert f"uid {uid} inside = uid {uid} outside" in k["sandbox"]
    assert "outbound through slirp4netns" in k["sandbox"]
