"""Bash habits work as at a prompt: errors end the cell, never the session, and the kernel's own
machinery never shows (in traces, traps, messages) and cannot be wedged from a cell."""

import re
import subprocess
import tempfile

import pytest
from harness import Kernel, user_dir

# Every fd of the shell's but the cell's own stdout and stderr (the kernel keeps copies of them).
OTHER_FDS = "[[ /dev/fd/$fd -ef /dev/stdout || /dev/fd/$fd -ef /dev/stderr ]] && continue;"
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


@pytest.mark.parametrize(
    "strict, cell",
    [
        ("set -euo pipefail", "exec /nonexistent/cmd\necho not reached"),
        ("set -e", "echo $- >/dev/null; exec /nonexistent/cmd arg; echo not reached"),
        ("", "set -euo pipefail\nexec /nonexistent/cmd\necho not reached"),
        ("set -e", "command exec /nonexistent/cmd; echo not reached"),
        ("set -e", "builtin exec /nonexistent/cmd; echo not reached"),
        ("set -e", "\\exec /nonexistent/cmd; echo not reached"),
        ("set -e", "LC_ALL=C exec /nonexistent/cmd; echo not reached"),
        ("set -e", "if true; then exec /nonexistent/cmd; fi; echo not reached"),
    ],
)
def test_under_set_e_a_failed_exec_ends_the_cell_and_the_session_keeps_its_state_and_set_e(new_kernel, strict, cell):
    # bash 5.2 ends itself at once when an exec fails under -e, running no trap (the session would
    # be gone, with all its state); at a prompt without -e it is an error like any other.
    k = new_kernel()
    k.run(STATE)
    k.run(strict)
    r = k.run(cell, timeout=10)
    assert (r.status, r.evalue, r.stdout, r.stderr) == ("error", "exit status 127", "", "bash: /nonexistent/cmd: No such file or directory\n")
    _state_survives(k)
    r = k.run("false; echo not reached")
    assert (r.evalue, r.stdout) == ("exit status 1", "")
    # An exec of redirections alone keeps -e, in its cell and after, also as the cell's last command.
    r = k.run("exec 3>/dev/null; false; echo not reached")
    assert (r.evalue, r.stdout) == ("exit status 1", "")
    assert k.run("exec 3>&-").status == "ok"
    r = k.run('[[ $- == *e* ]] && echo still -e; false; echo not reached')
    assert (r.evalue, r.stdout) == ("exit status 1", "still -e\n")
    # the kernel's watch over the exec leaves $? and $_ as they are (no kernel name in them)
    r = k.run("[[ -x /nonexistent/cmd ]] && exec /nonexistent/cmd; echo $? >/dev/null; mkdir -p /tmp/d1 && cd $_ && pwd")
    assert (r.status, r.stdout) == ("ok", "/tmp/d1\n")
    # and an exec that works replaces the shell, as always
    r = k.run("exec bash -c 'echo replaced; exit 4'")
    assert (r.ename, r.stdout) == ("ShellExited", "replaced\n")


@pytest.mark.parametrize(
    "cell, message",
    [
        ('echo "$nope"\necho not reached', "bash: nope: unbound variable\n"),
        ("echo ${X:?must be set}; echo not reached", "bash: X: must be set\n"),
        ("f() { echo ${!nope}; }\nf\necho not reached", "bash: nope: invalid indirect expansion\n"),
        ("typeset -i n\nn='1+'\necho not reached", 'bash: 1+: syntax error: operand expected (error token is "+")\n'),
    ],
)
def test_under_strict_mode_an_error_that_ends_bash_ends_the_cell_and_the_session_goes_on(new_kernel, cell, message):
    # At a prompt, `set -eu` then an unbound variable closes the terminal; here the cell fails and
    # the session keeps its variables, functions, aliases, options, traps, cwd and $$.
    k = new_kernel()
    k.run("set -euo pipefail")
    pid = k.run("cd /tmp; KEPT='kept it'; declare -A M=([a]=1); declare -ri R=5; kept_fn() { echo fn; }\n"
                "alias ll='echo ll'; trap 'echo usr1' USR1; trap 'echo bye' EXIT; set -- p1 'p 2'; echo $$").stdout
    r = k.run(cell, timeout=20)
    assert (r.status, r.ename, r.evalue) == ("error", "ExitCode", "exit status 1")
    assert (r.stdout, r.stderr) == ("", message)
    r = k.run('echo "$PWD|$KEPT|${M[a]}|$R|$(kept_fn)|$1|$2|$$"; ll; trap -p')
    assert r.stdout == f"/tmp|kept it|1|5|fn|p1|p 2|{pid}ll\ntrap -- 'echo bye' EXIT\ntrap -- 'echo usr1' SIGUSR1\n"
    r = k.run('echo "$-"; set -o | grep -wE "errexit|nounset|pipefail|errtrace"')
    assert set("eu") <= set(r.stdout.split("\n")[0])
    assert re.findall(r"(\w+)\s+on", r.stdout) == ["errexit", "errtrace", "nounset", "pipefail"]
    r = k.run("false; echo not reached")  # set -e still ends the cell
    assert (r.evalue, r.stdout) == ("exit status 1", "")
    r = k.run("exit 3")  # and exit still ends the session, running the user's EXIT trap
    assert (r.ename, r.stdout) == ("ShellExited", "bye\n")


def test_the_strict_mode_hand_over_keeps_what_the_user_has_whatever_the_options(new_kernel, tmp_path):
    k = new_kernel()
    k.run("exec 3>fd3.txt 8>fd8.txt; G=(g1 g2); declare -A M=([\"a'b\"]=$'x\\ny'); declare -n R=G\n"
          "trap $'echo u1\\necho u2' USR1; shopt -s varredir_close nocasematch\n"
          "shopt() { echo my-shopt; }; alias unset='echo UNSET'; export POSIXLY_CORRECT=1; uid=mine; IFS=:\n"
          "pushd -n /usr >/dev/null; pushd -n '/a b' >/dev/null; set -f -eu")
    # an error in a function whose locals shadow a global and nothing, with stdout and stderr redirected
    r = k.run("f() { local G=shadow L=local; echo $nope; }\nf >out.txt 2>err.txt", timeout=20)
    assert (r.ename, r.evalue, r.stdout, r.stderr) == ("ExitCode", "exit status 1", "", "")
    assert (tmp_path / "err.txt").read_text() == "bash: nope: unbound variable\n"
    r = k.run('echo visible; echo visible-err >&2; declare -p G M R uid IFS POSIXLY_CORRECT; trap -p USR1\n'
              'echo three >&3; echo eight >&8; shopt | head -1; type -t unset; builtin shopt -p varredir_close nocasematch')
    assert r.stderr == "visible-err\n"
    assert r.stdout == ("visible\ndeclare -a G=([0]=\"g1\" [1]=\"g2\")\ndeclare -A M=([\"a'b\"]=$'x\\ny' )\n"
                        'declare -n R="G"\ndeclare -- uid="mine"\ndeclare -- IFS=":"\ndeclare -x POSIXLY_CORRECT="1"\n'
                        "trap -- 'echo u1\necho u2' USR1\nmy-shopt\nalias\n"
                        "shopt -s varredir_close\nshopt -s nocasematch\n")
    assert set("efu") <= set(k.run('echo "$-"').stdout.strip())
    r = k.run('dirs -p; [[ -v L ]] || declare -p L')
    assert (r.stdout, r.stderr) == (f"{tmp_path}\n/a b\n/usr\n", "bash: declare: L: not found\n")
    assert (tmp_path / "fd3.txt").read_text() == "three\n" and (tmp_path / "fd8.txt").read_text() == "eight\n"


@pytest.mark.parametrize("setup", ["root", "isolation off", "user"])
def test_the_strict_mode_hand_over_holds_as_root_as_a_user_and_without_isolation(setup):
    if setup == "user":
        k = Kernel(user_dir("sk-strict-"), flavor="user")
    else:
        k = Kernel(tempfile.mkdtemp(prefix="sk-strict-"), ["--Sandbox.isolation=off"] if setup == "isolation off" else [])
    try:
        k.run("set -euo pipefail; K='kept it'; f() { echo fn; }; cd /")
        r = k.run("echo ${nope}x", timeout=20)
        assert (r.ename, r.stderr) == ("ExitCode", "bash: nope: unbound variable\n")
        out = k.run('echo "$K|$(f)|$PWD|$-"').stdout.strip().split("|")
        assert out[:3] == ["kept it", "fn", "/"] and set("eu") <= set(out[3])
    finally:
        k.shutdown()


def test_strict_mode_errors_can_follow_one_another_and_leak_no_fds(new_kernel):
    k = new_kernel()
    k.run("set -eu; K=kept")
    fds = k.run("ls /proc/$$/fd | wc -l").stdout
    for name, cell in (("a", "echo $a"), ("b", "echo $b"), ("c", "f() { echo $c; }; f")):
        r = k.run(cell, timeout=20)
        assert (r.ename, r.stderr) == ("ExitCode", f"bash: {name}: unbound variable\n")
    kept, after = k.run('echo "$K"; ls /proc/$$/fd | wc -l').stdout.split()
    assert kept == "kept" and int(after) <= int(fds)  # (the first bash may hold one more from its start)


def test_the_strict_mode_hand_over_keeps_extglob_functions_and_extdebug(new_kernel):
    k = new_kernel()
    k.run("shopt -s extglob")
    k.run("m() { case $1 in @(x|y)) echo match;; esac; }; zf() { echo zf; }; alias zz='echo zz'\n"
          "shopt -s extdebug; set -T -euo pipefail")
    assert k.run("echo $undefined1", timeout=20).stderr == "bash: undefined1: unbound variable\n"
    r = k.run('echo "$-"; m x; zf; zz; shopt -p extglob extdebug; set -o | grep -w pipefail')
    flags, rest = r.stdout.split("\n", 1)
    assert set("euET") <= set(flags) and r.stderr == ""
    assert rest == "match\nzf\nzz\nshopt -s extglob\nshopt -s extdebug\npipefail       \ton\n"


def test_subshells_run_their_own_exit_traps(kernel):
    r = kernel.run("( trap 'echo sub-bye' EXIT; echo in ); x=$(trap 'echo cs-bye' EXIT; echo v); echo \"x=$x\"")
    assert r.stdout == "in\nsub-bye\nx=v\ncs-bye\n"


def test_a_background_job_outlives_a_strict_mode_error_which_says_it_left_the_job_table(new_kernel):
    k = new_kernel()
    k.run("set -eu")
    job = k.run("sleep 300 & echo $!").stdout.strip()
    r = k.run("echo $nope")
    assert r.stderr.startswith("bash: nope: unbound variable\n")
    assert "background jobs keep running but are no longer in `jobs`" in r.stderr
    assert k.run(f"kill -0 {job} && echo running; jobs | wc -l").stdout == "running\n0\n"


def test_exit_still_ends_the_session(new_kernel, tmp_path):
    k = new_kernel()
    r = k.run("set -e\nexit 3")
    assert (r.ename, r.evalue) == ("ShellExited", f"session 'default' ended (exit status 3); the next cell starts a fresh shell in {tmp_path}")


@pytest.mark.parametrize("cell", ["builtin exit 3", "f() { command exit 3; }; f", "\\builtin exit 3 2>/dev/null"])
def test_exit_past_the_kernels_function_ends_the_session_under_set_e_too(new_kernel, tmp_path, cell):
    k = new_kernel()
    k.run("set -e; trap 'echo bye' EXIT")
    r = k.run(cell, timeout=20)
    assert (r.ename, r.evalue) == ("ShellExited", f"session 'default' ended (exit status 3); the next cell starts a fresh shell in {tmp_path}")
    assert r.stdout == "bye\n"
    assert k.run('echo "$-"').stdout.count("e") == 0


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
    r = k.run("trap 'echo \"debug: $BASH_COMMAND\"' DEBUG\necho first")
    assert r.stdout == "debug: echo first\nfirst\n"  # nothing of the kernel's lines after it
    r = k.run("echo one\nx=2")
    assert r.stdout == "debug: echo one\none\ndebug: x=2\n"
    k.run("trap - DEBUG")
    assert k.run("echo clean").stdout == "clean\n"
    assert k.run("echo still clean").stdout == "still clean\n"


def test_a_debug_trap_sees_the_last_commands_status_and_last_argument_and_gives_them_back(new_kernel):
    k = new_kernel()
    k.run("trap 'echo \"[$? $_]\"' DEBUG")
    r = k.run("echo a b last >/dev/null\n! true p q\necho after $? $_")
    # (bash itself would leave the trap's own last argument in $_; the kernel gives the command's back)
    assert r.stdout.split("\n")[1:] == ["[0 last]", "[1 q]", "after 1 q", ""]


def test_traps_set_and_removed_in_a_sourced_file_or_a_function_hold_as_at_a_prompt(new_kernel):
    k = new_kernel()
    k.run("""printf '%s\\n' "trap 'echo \\"D \\$BASH_COMMAND\\"' DEBUG" > /tmp/traps.sh""")
    assert k.run(". /tmp/traps.sh").stdout == ""
    assert k.run("echo one").stdout == "D echo one\none\n"
    r = k.run("untrap() { trap - DEBUG; }\nuntrap")
    assert r.stdout == "D untrap\n"
    assert k.run("echo two").stdout == "two\n"
    assert k.run("echo three").stdout == "three\n"


def test_trap_p_shows_the_users_traps_as_bash_prints_them_and_none_of_the_kernels(new_kernel):
    k = new_kernel()
    # Between cells and in a cell the kernel holds ERR, INT and, at times, DEBUG and RETURN.
    assert k.run("trap -p; trap; trap -p INT ERR DEBUG RETURN").stdout == ""
    quoted = "trap -- 'echo '\\''q'\\''' ERR\n"  # bash's own quoting of echo 'q'
    r = k.run("trap \"echo 'q'\" ERR; trap 'echo bye' EXIT; trap '' RETURN; trap -p")
    assert r.stdout == "trap -- 'echo bye' EXIT\n" + quoted + "trap -- '' RETURN\n"
    assert k.run("trap -p RETURN ERR").stdout == "trap -- '' RETURN\n" + quoted
    r = k.run("trap - ERR RETURN EXIT; trap -p; trap 'echo x' BOGUS; echo $?")
    assert (r.stdout, r.stderr) == ("1\n", "bash: trap: BOGUS: invalid signal specification\n")
    assert k.run("trap -l").stdout.startswith(" 1) SIGHUP")


def test_err_trap_fires_for_the_users_failures_and_set_e_still_ends_the_cell(new_kernel):
    k = new_kernel()
    k.run("trap 'echo \"err: $BASH_COMMAND\"' ERR")
    r = k.run("false\necho next")
    assert r.stdout == "err: false\nnext\n"
    r = k.run("set -e\nfalse\necho not reached")
    assert (r.evalue, r.stdout) == ("exit status 1", "err: false\n")
    k.run("set +e; trap - ERR")
    assert k.run("false; echo quiet").stdout == "quiet\n"


def test_err_trap_sees_the_failing_commands_line_function_and_status(new_kernel):
    # As `bash -E` runs a script (the kernel keeps errtrace on): the line within the cell, the
    # function the failure is in, and its status.
    k = new_kernel()
    k.run("""trap 'echo "ERR line $LINENO in ${FUNCNAME[0]-top} status $?"' ERR""")
    r = k.run("g() {\n  (exit 4)\n}\ng\necho end $?")
    assert r.stdout == "ERR line 2 in g status 4\nERR line 4 in top status 4\nend 4\n"
    assert k.run("false; echo $?").stdout == "ERR line 1 in top status 1\n1\n"


def test_set_e_with_an_err_trap_in_the_same_cell_runs_the_trap_then_ends_the_cell(new_kernel):
    k = new_kernel()
    k.run(STATE)
    r = k.run("set -euo pipefail; trap 'echo \"failed: $?\"' ERR\necho a\nfalse\necho not reached")
    assert (r.stdout, r.evalue) == ("a\nfailed: 1\n", "exit status 1")
    r = k.run('echo "$-"')  # the session and its -e are still there
    assert r.status == "ok" and "e" in r.stdout
    _state_survives(k)


def test_set_v_under_set_e_shows_only_the_users_lines(new_kernel):
    k = new_kernel()
    k.run("set -e")
    assert k.run("set -v\necho v").stderr == ""
    assert k.run("echo w").stderr == "echo w\n"


def test_set_v_never_echoes_the_kernels_trap_commands(new_kernel):
    # bash echoes a trap's command under -v each time it runs: the user's, never the kernel's gates.
    k = new_kernel()
    r = k.run("set -v\nfalse\necho x")  # the ERR trap (the kernel's) runs in the cell that set -v
    assert (r.stdout, r.stderr) == ("x\n", "")
    k.run("set +v")
    k.run("trap 'echo E' ERR")
    assert k.run("set -v\nfalse").stderr == "echo E\n"
    k.run("set +v; trap - ERR")
    k.run("trap 'echo \"D $BASH_COMMAND\"' DEBUG")
    assert k.run("set -v").stderr == ""  # the DEBUG gate ran four times after it
    r = k.run("echo a")
    assert (r.stdout, r.stderr) == ("D echo a\na\n", 'echo a\necho "D $BASH_COMMAND"\n')
    r = k.run("set -v; sleep 30", interrupt_after=1)  # the INT gate, then DEBUG gates unwinding
    assert r.ename == "Interrupted"
    assert r.stderr == 'set -v; sleep 30\necho "D $BASH_COMMAND"\necho "D $BASH_COMMAND"\n'
    r = k.run("set -v\nset -e\nfalse\necho no")  # the ERR gate, then DEBUG gates unwinding
    assert r.ename == "ExitCode" and r.stdout == "D set -v\nD set -e\nD false\n"
    assert r.stderr == "set -v\nset -e\nfalse\necho no\n" + 3 * 'echo "D $BASH_COMMAND"\n'
    assert k.run("set +ev\ntrap - DEBUG").stderr == 'set +ev\ntrap - DEBUG\necho "D $BASH_COMMAND"\n'
    assert k.run("echo quiet").stderr == ""


def test_return_trap_with_extdebug_fires_for_the_users_functions_only(new_kernel):
    k = new_kernel()
    r = k.run("shopt -s extdebug; trap 'echo returned' RETURN\ng() { :; }\ng\necho after")
    assert r.stdout == "returned\nafter\n"
    r = k.run("g\necho after")
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
    r = kernel.run(f"for fd in {{10..30}}; do {OTHER_FDS} {{ {{ {forged}; }} >&$fd; }} 2>/dev/null; done; echo after", timeout=10)
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
    r = k.run(f"for fd in {{10..30}}; do {OTHER_FDS} {{ {{ {flood}; }} >&$fd; }} 2>/dev/null; done; echo after", timeout=60)
    assert (r.status, r.stdout) == ("ok", "after\n")
    grown_mb = (_peak_rss_kb(k.pid) - before) / 1024
    assert grown_mb < 40, f"the kernel grew by {grown_mb:.0f} MB"
    assert k.run("echo next").stdout == "next\n"


@pytest.mark.parametrize("options", ["", "set -T"], ids=["plain", "functrace"])
def test_debug_and_err_traps_together_fire_as_bash_fires_them(new_kernel, options):
    # The same lines as a script under `bash -E` (the kernel keeps errtrace on) are the reference.
    # Under functrace the DEBUG trap reaches the kernel's functions in the ERR gate too.
    cells = [f"{options}\ntrap 'echo \"D $BASH_COMMAND\"' DEBUG; trap 'echo \"E $?\"' ERR", "false",
             "f() { false; }\nf", "for i in 1 2; do (exit $i); done", "( false ); echo x", "trap - DEBUG ERR", "echo end"]
    reference = subprocess.run(["bash", "-E"], input="\n".join(cells) + "\n", capture_output=True, text=True).stdout
    k = new_kernel()
    assert "".join(k.run(cell).stdout for cell in cells) == reference
