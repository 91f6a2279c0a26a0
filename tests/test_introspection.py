"""Completion, inspection and is_complete are answered by the session itself."""

import pytest


@pytest.fixture(scope="module")
def prepared(kernel):
    kernel.run("mkdir -p place/inner_dir && touch place/file_one && cd place && "
               "export MYVAR_UNIQUE=1 && my_unique_function() { :; }")
    yield kernel
    kernel.run(f"cd {kernel.cwd}")


@pytest.mark.parametrize(
    "code, expected, start",
    [
        ("ech", "echo", 0),
        ("my_unique_fu", "my_unique_function", 0),
        ("ls fi", "file_one", 3),
        ("ls inn", "inner_dir/", 3),
        ("cat ./file_o", "./file_one", 4),
        ("echo $MYVAR_UN", "$MYVAR_UNIQUE", 5),
        ("echo ${MYVAR_UN", "${MYVAR_UNIQUE}", 5),
        ("true && my_unique_fu", "my_unique_function", 8),
    ],
)
def test_completion_sees_the_sessions_commands_files_and_variables(prepared, code, expected, start):
    reply = prepared.request("complete", code, len(code))
    assert expected in reply["matches"]
    assert (reply["cursor_start"], reply["cursor_end"]) == (start, len(code))


def test_inspect_shows_type_and_help(prepared):
    reply = prepared.request("inspect", "my_unique_function", 5)
    assert reply["found"] and "my_unique_function is a function" in reply["data"]["text/plain"]
    reply = prepared.request("inspect", "cd /tmp", 1)
    assert "cd is a shell builtin" in reply["data"]["text/plain"]
    assert "Change the shell working directory" in reply["data"]["text/plain"]
    assert not prepared.request("inspect", "no_such_thing_here", 3)["found"]


@pytest.mark.parametrize(
    "code, status",
    [
        ("echo hi", "complete"),
        ("for i in 1 2; do echo $i; done", "complete"),
        ("if true; then", "incomplete"),
        ("echo 'open", "incomplete"),
        ("echo a \\", "incomplete"),
        ("cat <<EOF\nbody", "incomplete"),
        ("echo )", "invalid"),
        ("fi", "invalid"),
    ],
)
def test_is_complete_asks_bashs_parser(kernel, code, status):
    assert kernel.request("is_complete", code)["status"] == status


def test_kernel_info_describes_bash(kernel):
    info = kernel.request("kernel_info")
    lang = info["language_info"]
    assert lang["name"] == "bash" and lang["version"][0].isdigit()
    assert (lang["mimetype"], lang["file_extension"], lang["codemirror_mode"], lang["pygments_lexer"]) == (
        "text/x-sh", ".sh", "shell", "bash")
    assert info["banner"].startswith("sandbox-kernel")
    assert info["implementation"] == "sandbox_kernel"
    # What the lab extension's indicator shows: the mode in force and the facts of %sandbox.
    assert info["sandbox"]["mode"] == "isolated" and info["sandbox"]["warning"] == ""
    assert "pid" in info["sandbox"]["facts"]["namespaces"]
