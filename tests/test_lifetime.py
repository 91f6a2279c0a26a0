"""Shutdown and restart end the shell and every process it started."""

import os
import signal
import uuid

from harness import process_tree, processes_named, still_running, wait_until

SPAWN_EVERYTHING = """
(exec -a {tag}-job sleep 300) &
( (exec -a {tag}-grandchild sleep 300) & ) &
setsid bash -c '(exec -a {tag}-daemon sleep 300) & disown' &
nohup bash -c 'exec -a {tag}-nohup sleep 300' >/dev/null 2>&1 &
sleep 0.3
"""


def _started(kernel, tag):
    """Start everything; the kernel's whole process tree (supervisor, sandbox, egress helper and
    the cell's processes), which must be gone with it."""
    kernel.run(SPAWN_EVERYTHING.format(tag=tag))
    names = [f"{tag}-{kind}" for kind in ("job", "grandchild", "daemon", "nohup")]
    assert all(processes_named(n) for n in names), [n for n in names if not processes_named(n)]
    tree = process_tree(kernel.pid)
    tree.pop(kernel.pid)
    assert len(tree) >= 7, tree  # supervisor, its two namespace processes, bash and the four sleeps at least
    return tree


def test_shutdown_ends_every_process_the_shell_started(new_kernel):
    k = new_kernel()
    tag = f"sk-{uuid.uuid4().hex[:8]}"
    tree = _started(k, tag)
    k.shutdown()
    assert wait_until(lambda: not processes_named(tag), 2), processes_named(tag)
    assert wait_until(lambda: not still_running(tree), 2), still_running(tree)  # the supervisor's too


def test_restart_ends_every_process_and_gives_a_fresh_shell(new_kernel):
    k = new_kernel()
    tag = f"sk-{uuid.uuid4().hex[:8]}"
    k.run("export BEFORE=1")
    tree = _started(k, tag)
    k.km.restart_kernel(now=False)
    k.kc.wait_for_ready(timeout=60)
    assert wait_until(lambda: not processes_named(tag), 2), processes_named(tag)
    assert wait_until(lambda: not still_running(tree), 2), still_running(tree)  # the supervisor's too
    assert k.run('echo "[$BEFORE]"').stdout == "[]\n"


def test_killed_kernel_takes_the_sandbox_with_it(new_kernel):
    k = new_kernel()
    tag = f"sk-{uuid.uuid4().hex[:8]}"
    tree = _started(k, tag)
    os.kill(k.pid, signal.SIGKILL)
    assert wait_until(lambda: not processes_named(tag), 2), processes_named(tag)
    assert wait_until(lambda: not still_running(tree), 2), still_running(tree)  # the supervisor's too
