"""Named sessions: every row of the %session table and every rule, through a real kernel."""

import uuid

import pytest

from harness import processes_named, wait_until


def _table(result):
    (display,) = result.displays
    lines = display["data"]["text/plain"].splitlines()
    rows = [line.split() for line in lines[1:]]
    return {r[-5] if r[0] != "*" else r[1]: {"current": r[0] == "*", "cwd": r[-4], "state": r[-3], "jobs": r[-2]} for r in rows}


def test_default_exists_and_is_current(new_kernel, tmp_path):
    k = new_kernel()
    assert k.run("%session").stdout == "default\n"
    table = _table(k.run("%session list"))
    assert table == {"default": {"current": True, "cwd": str(tmp_path), "state": "idle", "jobs": "0"}}


def test_sessions_have_their_own_env_and_cwd(new_kernel, tmp_path):
    k = new_kernel()
    (tmp_path / "b").mkdir()
    r = k.run("%session create build --cwd /usr --env MODE=production --env 'GREETING=hello world'\n"
              "%session create test --cwd b --env MODE=test")
    assert r.status == "ok"
    build = k.run("%%session build\necho \"$PWD $MODE $GREETING\"")
    assert build.stdout == "/usr production hello world\n"
    assert build.metadata["sandbox"] == {"session": "build"}
    assert k.run("%%session test\necho \"$PWD $MODE\"").stdout == f"{tmp_path}/b test\n"
    default = k.run('echo "$PWD [$MODE]"')
    assert default.stdout == f"{tmp_path} []\n" and default.metadata["sandbox"] == {"session": "default"}


def test_sessions_are_independent(new_kernel):
    k = new_kernel()
    k.run("%session create other")
    k.run("cd /; export ONLY_DEFAULT=1; f() { echo f; }; set -o pipefail")
    r = k.run("%%session other\necho \"$PWD [$ONLY_DEFAULT]\"; type -t f; set -o | grep -w pipefail")
    assert r.stdout == f"{k.cwd} []\npipefail       \toff\n"


def test_use_switches_the_current_session_and_a_magic_may_precede_bash(new_kernel):
    k = new_kernel()
    k.run("%session create build --cwd /etc")
    r = k.run("%session use build\npwd")
    assert r.stdout == "/etc\n" and r.metadata["sandbox"] == {"session": "build"}
    assert k.run("%session").stdout == "build\n"
    assert k.run("pwd").stdout == "/etc\n"
    assert _table(k.run("%session list"))["build"]["current"]


def test_list_shows_live_cwd_state_and_jobs(new_kernel):
    k = new_kernel()
    k.run("%session create worker --cwd /")
    k.run("%%session worker\ncd /tmp; sleep 300 & sleep 300 &")
    table = _table(k.run("%session list"))
    assert table["worker"] == {"current": False, "cwd": "/tmp", "state": "idle", "jobs": "2"}
    k.run("%%session worker\nexit 4")
    assert _table(k.run("%session list"))["worker"]["state"] == "exited"


def test_restart_gives_a_fresh_shell_with_creation_cwd_and_env(new_kernel):
    k = new_kernel()
    k.run("%session create build --cwd /usr --env MODE=prod")
    k.run("%%session build\ncd /; MODE=changed; EXTRA=1")
    r = k.run("%session restart build")
    assert r.stdout == "session 'build' restarted in /usr\n"
    assert k.run('%%session build\necho "$PWD $MODE [$EXTRA]"').stdout == "/usr prod []\n"


def test_restart_without_a_name_restarts_the_current_session(new_kernel):
    k = new_kernel()
    k.run("X=1")
    k.run("%session restart")
    assert k.run('echo "[$X]"').stdout == "[]\n"


def test_delete_ends_that_sessions_processes_and_nothing_else(new_kernel):
    k = new_kernel()
    tag = f"sk-{uuid.uuid4().hex[:8]}"
    k.run(f"%session create doomed\n%session create keeper")
    k.run(f"%%session doomed\n(exec -a {tag}-doomed-job sleep 300) &\n"
          f"setsid bash -c '(exec -a {tag}-doomed-daemon sleep 300) & disown' &\nsleep 0.3")
    k.run(f"%%session keeper\n(exec -a {tag}-keeper-job sleep 300) &\nsleep 0.3")
    assert processes_named(f"{tag}-doomed-job") and processes_named(f"{tag}-doomed-daemon")
    assert k.run("%session delete doomed").status == "ok"
    assert wait_until(lambda: not processes_named(f"{tag}-doomed"), 2), processes_named(f"{tag}-doomed")
    assert processes_named(f"{tag}-keeper-job")
    assert "doomed" not in _table(k.run("%session list"))


def test_deleting_the_current_session_falls_back_to_default(new_kernel):
    k = new_kernel()
    k.run("%session create tmp\n%session use tmp")
    assert k.run("%session delete tmp").stdout == "session 'tmp' deleted; cells now run in 'default'\n"
    assert k.run("%session").stdout == "default\n"


def test_all_sessions_share_one_sandbox(new_kernel):
    k = new_kernel()
    k.run("%session create server\n%session create client")
    k.run("%%session server\npython3 -m http.server 8765 --bind 127.0.0.1 >/dev/null 2>&1 &\n"
          "for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/8765) 2>/dev/null && break; sleep 0.1; done")
    k.run("echo shared > shared-file")
    r = k.run("%%session client\ncat shared-file; python3 -c \"import urllib.request as u; "
              "print(u.urlopen('http://127.0.0.1:8765/shared-file').read().decode(), end='')\"; ps -eo args | grep -c '[h]ttp.server 8765'")
    assert r.stdout == "shared\nshared\n1\n"


def test_background_jobs_keep_running_in_every_session(new_kernel):
    k = new_kernel()
    k.run("%session create a")
    k.run("%%session a\nsleep 300 &")
    k.run("sleep 300 &")
    k.run("echo other cells")
    assert "Running" in k.run("%%session a\njobs").stdout
    assert "Running" in k.run("jobs").stdout


@pytest.mark.parametrize(
    "cell, message",
    [
        ("%session create 'bad name'", "%session: 'bad name' is not a valid session name (1-64 of A-Z a-z 0-9 _ . -)"),
        ("%session create " + "x" * 65, "is not a valid session name"),
        ("%session create default", "%session create: a session named 'default' already exists"),
        ("%session use nowhere", "%session: no session named 'nowhere' (see %session list)"),
        ("%%session nowhere\necho hi", "%session: no session named 'nowhere' (see %session list)"),
        ("%session delete default", "%session delete: the session 'default' cannot be deleted (restart it instead)"),
        ("%session create e --env NOVALUE", "%session create: --env 'NOVALUE' needs the form KEY=VALUE"),
        ("%session create c --cwd /nonexistent", "%session create c: cwd /nonexistent: No such file or directory"),
        ("%session create c --cwd /etc/hostname", "%session create c: cwd /etc/hostname: Not a directory"),
        ("%session frobnicate", "%session: unknown subcommand 'frobnicate' (see %session --help)"),
        ("%session create ok1\n%session use nowhere\necho ran", "%session: no session named 'nowhere' (see %session list)"),
    ],
)
def test_bad_input_is_one_clear_line_and_changes_nothing(kernel, cell, message):
    before = kernel.run("%session list").displays
    r = kernel.run(cell)
    assert r.status == "error"
    assert message in r.evalue and "\n" not in r.evalue
    assert r.stdout == ""
    assert kernel.run("%session list").displays == before
    assert kernel.run("%session").stdout == "default\n"


def test_help_lists_every_subcommand(kernel):
    text = kernel.run("%session --help").stdout
    for sub in ("list", "create NAME", "use NAME", "restart [NAME]", "delete NAME", "%%session NAME", "%sandbox"):
        assert sub in text


def test_lines_that_are_not_our_magics_are_bash(kernel):
    r = kernel.run("cat <<EOF\n%session list\n%%session x\nEOF")
    assert r.stdout == "%session list\n%%session x\n"
    r = kernel.run("sleep 300 &\n%1 2>&1 | head -c 0; kill %1")
    assert r.status == "ok"
    assert "no job control" in kernel.run("%1").stderr
