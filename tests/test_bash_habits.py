"""Bash habits work as at a prompt: errors end the cell, never the session, and the kernel's own
machinery never shows (in traces, traps, messages) and cannot be wedged from a cell."""

import re

import pytest

STATE = "cd /tmp; KEPT=kept; kept_fn() { echo fn; }; sleep 300 &"
CHECK = 'echo "$PWD $KEPT $(kept_fn) $(jobs -r | wc -l)"'


def _state_survives(k):
    assert k.run(CHECK).stdout == "/tmp kept fn 1\n"


@pytest.mark.parametrize(
    "cell, status, message",
    [
        ("set -u\necho \"$nope\"\necho not reached", 1, "bash: nope: unbound variable\n"),
        ("echo ${x:?is missing}; echo not reached", 1, "bash: x: is missing\n"),
        ("echo one >/dev/null\necho ${x:?is missing}\necho not reached", 1, "bash: x: is missing\n"),
        ("exec /nonexistent/cmd\necho not reached", 127, "bash: /nonexistent/cmd: No such file or directory\n"),
        ("readonly R=1\nR=2\necho not reached", 1, "bash: R: readonly variable\n"),
        ("set -o bogus\necho not reached", 2, "bash: set: bogus: invalid option name\n"),
        ("typeset -i n\nn='1+'\necho not reached", 1, 'bash: 1+: syntax error: operand expected (error token is "+")\n'),
    ],
)
def test_an_aborting_error_ends_the_cell_with_bashs_message_and_the_session_keeps_its_state(new_kernel, cell, status, message):
    k = new_kernel()
    k.run(STATE)
    r = k.run(cell, timeout=10)
    assert (r.status, r.ename, r.evalue) == ("error", "ExitCode", f"exit status {status}")
    assert r.stderr == message
    assert "not reached" not in r.stdout
    _state_survives(k)


def test_set_euo_pipefail_stops_the_cell_at_the_failure_and_stays_on(new_kernel):
    k = new_kernel()
    k.run(STATE)
    r = k.run("set -euo pipefail\necho before\nfalse | true\necho not reached")
    assert (r.status, r.ename, r.evalue) == ("error", "ExitCode", "exit status 1")
    assert r.stdout == "before\n"
    _state_survives(k)
    r = k.run('echo "$-"; set -o | grep -wE "errexit|nounset|pipefail"')
    assert "e" in r.stdout.split("\n")[0] and "u" in r.stdout.split("\n")[0]
    assert re.findall(r"(\w+)\s+on", r.stdout) == ["errexit", "nounset", "pipefail"]
    # inside functions and subshells too, and not in conditions
    r = k.run("f() { false; echo not reached; }\nf\necho not reached")
    assert (r.evalue, r.stdout) == ("exit status 1", "")
    r = k.run("(exit 4); echo not reached")
    assert (r.evalue, r.stdout) == ("exit status 4", "")
    r = k.run("if false; then :; fi; false || true; ! false; echo survives")
    assert (r.status, r.stdout) == ("ok", "survives\n")
    _state_survives(k)


def test_exit_still_ends_the_session(new_kernel, tmp_path):
    k = new_kernel()
    r = k.run("set -e\nexit 3")
    assert (r.ename, r.evalue) == ("ShellExited", f"session 'default' ended (exit status 3); the next cell starts a fresh shell in {tmp_path}")


def test_set_x_traces_only_the_users_commands(new_kernel):
    k = new_kernel()
    r = k.run("set -x\necho hi\nx=$(echo sub)")
    assert r.stdout == "hi\n"
    assert "__sk" not in r.stderr and "eval" not in r.stderr
    assert [line.lstrip("+") for line in r.stderr.splitlines()] == [" echo hi", " echo sub", " x=sub"]
    r = k.run("echo again")
    assert [line.lstrip("+") for line in r.stderr.splitlines()] == [" echo again"]
    r = k.run("set +x")
    assert [line.lstrip("+") for line in r.stderr.splitlines()] == [" set +x"]
    assert k.run("echo quiet").stderr == ""


def test_set_v_shows_exactly_the_users_lines(new_kernel):
    k = new_kernel()
    assert k.run("set -v").stderr == ""
    r = k.run("echo a\necho b")
    assert (r.stdout, r.stderr) == ("a\nb\n", "echo a\necho b\n")
    assert k.run("set +v").stderr == "set +v\n"
    assert k.run("echo quiet").stderr == ""


def test_debug_trap_fires_for_the_users_commands_only_and_can_be_removed(new_kernel):
    k = new_kernel()
    k.run("trap 'echo \"debug: $BASH_COMMAND\"' DEBUG")
    k.run("true")  # the cell after the one that set it
    r = k.run("echo one\nx=2")
    assert r.stdout == "debug: echo one\none\ndebug: x=2\n"
    k.run("trap - DEBUG")
    assert k.run("echo clean").stdout == "clean\n"
    assert k.run("echo still clean").stdout == "still clean\n"


def test_err_trap_fires_for_the_users_failures_and_set_e_still_ends_the_cell(new_kernel):
    k = new_kernel()
    k.run("trap 'echo \"err: $BASH_COMMAND\"' ERR")
    r = k.run("false\necho next")
    assert r.stdout == "err: false\nnext\n"
    r = k.run("set -e\nfalse\necho not reached")
    assert (r.evalue, r.stdout) == ("exit status 1", "err: false\n")
    k.run("set +e; trap - ERR")
    assert k.run("false; echo quiet").stdout == "quiet\n"


def test_return_trap_with_extdebug_fires_for_the_users_functions_only(new_kernel):
    k = new_kernel()
    k.run("shopt -s extdebug; trap 'echo returned' RETURN")
    k.run("true")
    r = k.run("g() { :; }\ng\necho after")
    assert r.stdout == "returned\nafter\n"
    k.run("trap - RETURN; shopt -u extdebug")
    assert k.run("g; echo quiet").stdout == "quiet\n"


def test_messages_and_names_read_as_at_a_prompt(kernel):
    r = kernel.run('no_such_command_here; echo "$0"; echo "${BASH_SOURCE[*]}"')
    assert r.stderr == "bash: no_such_command_here: command not found\n"
    lines = r.stdout.splitlines()
    assert lines[0] == "bash"
    assert "sandbox_kernel" not in r.stdout


def test_the_users_options_aliases_and_functions_do_not_change_how_cells_start_and_end(new_kernel):
    k = new_kernel()
    r = k.run("IFS=:; set -f; shopt -s nullglob failglob nocasematch extglob; set -u\n"
              "alias printf='echo BROKEN' read='echo BROKEN' builtin='echo BROKEN' eval='echo BROKEN'\n"
              "printf() { echo BROKEN; }; exec() { echo BROKEN; }; echo() { command echo \"$@\"; }; cat() { :; }")
    assert r.status == "ok" and "BROKEN" not in r.stdout + r.stderr
    r = k.run("echo ok; cd /tmp\nx=1; echo $x")
    assert (r.status, r.stdout, r.stderr) == ("ok", "ok\n1\n", "")
    assert k.run("false").evalue == "exit status 1"
    assert k.run("%session list").status == "ok"
    assert k.request("is_complete", "if true; then")["status"] == "incomplete"
    assert k.run("printf x").stdout == "BROKEN x\n"  # the user's own alias, as at a prompt


@pytest.mark.parametrize(
    "forged",
    [
        r"printf 'REPLY\0x\0999999\0'",  # a reply header with a large count
        r"printf 'DONE\0'",  # a message cut short
        r"printf 'DONE\0not-the-nonce\0' ; printf 'xyz'",  # a wrong nonce, then a field without end
        r"head -c 3000000 /dev/zero | tr '\0' x",  # one huge field
    ],
)
def test_forged_protocol_messages_cannot_wedge_the_session(kernel, forged):
    r = kernel.run(f"for fd in {{10..30}}; do {{ {{ {forged}; }} >&$fd; }} 2>/dev/null; done; echo after", timeout=10)
    assert (r.status, r.stdout) == ("ok", "after\n")
    assert kernel.run("echo next").stdout == "next\n"


def test_a_shell_that_closed_its_channel_is_replaced_with_a_notice(new_kernel, tmp_path):
    k = new_kernel()
    r = k.run("for fd in {10..30}; do eval \"exec $fd>&-\"; done; echo closed", timeout=10)
    assert r.ename == "ShellExited"
    assert r.evalue.startswith("session 'default' ended")
    assert "closed the session's channel" in r.stderr
    assert k.run("echo fresh; pwd").stdout == f"fresh\n{tmp_path}\n"


def test_magics_of_a_cell_that_fails_change_nothing(new_kernel):
    k = new_kernel()
    r = k.run("%session create a\n%session use a\n%session create b --cwd /nonexistent/dir")
    assert r.ename == "SessionError"
    r = k.run("%session list")
    assert "a" not in [line.split()[-5] for line in r.displays[0]["data"]["text/plain"].splitlines()[1:]]
    assert k.run("%session").stdout == "default\n"
    assert k.run("%session create a").status == "ok"


def test_interrupting_a_shell_that_ignores_it_restarts_the_session(new_kernel, tmp_path):
    k = new_kernel()
    k.run("X=1")
    r = k.run("trap '' INT; while :; do :; done", interrupt_after=0.5, timeout=10)
    assert (r.ename, r.evalue) == ("Interrupted", "the cell was interrupted (the shell ignored it: session 'default' was restarted)")
    assert k.run('echo "[$X] $PWD"').stdout == f"[] {tmp_path}\n"


def _peak_rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def test_what_a_cell_writes_to_the_control_channel_stays_bounded_in_the_kernel(new_kernel):
    k = new_kernel()
    before = _peak_rss_kb(k.pid)
    # On every fd: a reply header that asks for ten million fields, 20 fields of 1 MB, one of 60 MB.
    flood = (r"printf 'REPLY\0x\09999999\0'; for i in {1..20}; do head -c 1000000 /dev/zero | tr '\0' x; "
             r"printf '\0'; done; head -c 60000000 /dev/zero | tr '\0' x; printf '\0'")
    r = k.run(f"for fd in {{10..30}}; do {{ {{ {flood}; }} >&$fd; }} 2>/dev/null; done; echo after", timeout=60)
    assert (r.status, r.stdout) == ("ok", "after\n")
    grown_mb = (_peak_rss_kb(k.pid) - before) / 1024
    assert grown_mb < 40, f"the kernel grew by {grown_mb:.0f} MB"
    assert k.run("echo next").stdout == "next\n"
