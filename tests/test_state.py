"""Every cell runs in one persistent bash session: what one cell sets, the next one sees."""


def test_cwd_persists_between_cells(kernel):
    kernel.run("mkdir -p deeper && cd deeper")
    assert kernel.run("pwd").stdout == f"{kernel.cwd}/deeper\n"
    kernel.run("cd ..")


def test_variables_persist_exported_and_plain(kernel):
    kernel.run("export EXPORTED=one; PLAIN=two; declare -a ARR=(a b c); declare -A MAP=([k]=v)")
    r = kernel.run('echo "$EXPORTED $PLAIN ${ARR[2]} ${MAP[k]}"; bash -c \'echo "child sees [$EXPORTED] [$PLAIN]"\'')
    assert r.stdout == "one two c v\nchild sees [one] []\n"


def test_functions_and_aliases_persist(kernel):
    kernel.run("greet() { echo \"hello $1\"; }\nalias ll='echo listing'")
    assert kernel.run("greet you; ll").stdout == "hello you\nlisting\n"


def test_shell_options_traps_and_umask_persist(kernel):
    kernel.run("set -o pipefail; shopt -s extglob nullglob; trap 'echo got usr1' USR1; umask 027")
    r = kernel.run("set -o | grep -w pipefail; shopt extglob nullglob; trap -p USR1; umask; kill -USR1 $$")
    assert r.stdout.split("\n") == [
        "pipefail       \ton",
        "extglob        \ton",
        "nullglob       \ton",
        "trap -- 'echo got usr1' SIGUSR1",
        "0027",
        "got usr1",
        "",
    ]
    kernel.run("set +o pipefail; shopt -u extglob nullglob; trap - USR1; umask 022")


def test_background_jobs_persist(kernel):
    kernel.run("sleep 300 &")
    r = kernel.run("jobs")
    assert "Running" in r.stdout and "sleep 300 &" in r.stdout
    kernel.run("kill %1; wait")


def test_declare_in_a_cell_is_global(kernel):
    kernel.run("declare -i COUNT=41; COUNT+=1")
    assert kernel.run("echo $COUNT; declare -p COUNT").stdout == "42\ndeclare -i COUNT=\"42\"\n"


def test_break_and_return_at_top_level_behave_as_at_a_prompt(kernel):
    r = kernel.run("break; echo still here")
    assert r.stdout == "still here\n"
    assert "break: only meaningful in a `for', `while', or `until' loop" in r.stderr
    r = kernel.run("return 4; echo not reached")
    assert r.stdout == "" and r.evalue == "exit status 4"
    assert kernel.run("echo $?").stdout == "4\n"
