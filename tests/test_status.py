"""A cell's status is its last command's, reported as bash users know it."""


def test_nonzero_exit_is_an_error_with_a_readable_name(kernel):
    r = kernel.run("echo before; (exit 3)")
    assert r.status == "error"
    assert (r.ename, r.evalue) == ("ExitCode", "exit status 3")
    assert [(e["ename"], e["evalue"]) for e in r.errors] == [("ExitCode", "exit status 3")]
    assert r.stdout == "before\n"


def test_status_is_the_last_commands(kernel):
    assert kernel.run("false; true").status == "ok"
    assert kernel.run("true; false").evalue == "exit status 1"


def test_pipelines_status_and_pipestatus_behave_as_in_bash(kernel):
    r = kernel.run("false | true; echo \"${PIPESTATUS[@]}\"")
    assert r.status == "ok" and r.stdout == "1 0\n"
    assert kernel.run("false | true").status == "ok"
    assert kernel.run("set -o pipefail; false | true").evalue == "exit status 1"
    kernel.run("set +o pipefail")


def test_dollar_question_carries_over_to_the_next_cell(kernel):
    kernel.run("(exit 7)")
    assert kernel.run("echo $?").stdout == "7\n"
    assert kernel.run("echo $?").stdout == "0\n"


def test_nonzero_exit_can_be_reported_as_ok(new_kernel):
    k = new_kernel("--SandboxKernel.error_on_nonzero_exit=False")
    r = k.run("false")
    assert r.status == "ok" and r.errors == []


def test_execute_reply_names_the_session(kernel):
    assert kernel.run("true").metadata["sandbox"] == {"session": "default"}
