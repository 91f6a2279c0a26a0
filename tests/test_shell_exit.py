"""The shell ending ends the cell with a clear message; the next cell gets a fresh shell."""

import pytest


@pytest.mark.parametrize(
    "cell, how",
    [
        ("exit 3", "exit status 3"),
        ("exec false", "exit status 1"),
        ("kill -9 $$", "signal 9"),
    ],
)
def test_shell_ending_is_reported_and_the_next_cell_gets_a_fresh_shell(new_kernel, tmp_path, cell, how):
    k = new_kernel(env=None)
    k.run("cd /; export GONE=1")
    r = k.run(cell)
    assert (r.status, r.ename) == ("error", "ShellExited")
    assert r.evalue == f"session 'default' ended ({how}); the next cell starts a fresh shell in {tmp_path}"
    assert "not reached" not in r.stdout
    assert k.run("echo \"[$GONE] $PWD\"").stdout == f"[] {tmp_path}\n"


def test_exec_replacing_the_shell_is_reported(new_kernel, tmp_path):
    k = new_kernel()
    r = k.run("exec true")
    assert r.status == "ok"
    assert f"session 'default' ended (exit status 0); the next cell starts a fresh shell in {tmp_path}" in r.stderr
    assert k.run("echo fresh").stdout == "fresh\n"


def test_background_jobs_end_with_their_shell(new_kernel):
    from harness import processes_named, wait_until

    k = new_kernel()
    k.run("(exec -a sk-bg-of-exited-shell sleep 300) &")
    assert processes_named("sk-bg-of-exited-shell")
    k.run("exit")
    assert wait_until(lambda: not processes_named("sk-bg-of-exited-shell"), 2)
