"""Nothing in a cell can wedge the session: incomplete code is a syntax error and nothing runs."""

import pytest


@pytest.mark.parametrize(
    "cell",
    [
        "touch ran\necho a \\",
        "touch ran\necho \"unterminated",
        "touch ran\necho 'unterminated",
        "touch ran\ncat <<EOF\nnever terminated",
        "touch ran\nif true; then\n  echo no fi",
        "touch ran\nfor i in 1 2; do echo $i",
        "touch ran\necho )",
        "touch ran; case x in",
    ],
)
def test_incomplete_cell_is_a_syntax_error_and_the_session_survives(kernel, cell):
    r = kernel.run(cell)
    assert (r.status, r.ename) == ("error", "SyntaxError")
    assert "syntax error" in r.stderr or "unexpected EOF" in r.stderr
    assert kernel.run("ls ran 2>&1; echo next").stdout == "ls: cannot access 'ran': No such file or directory\nnext\n"


def test_error_lines_are_the_cells_own(kernel):
    r = kernel.run("echo one\necho two\necho three )\necho four")
    assert r.stderr.startswith("bash: line 3: syntax error near unexpected token `)'")


def test_comment_only_and_blank_cells_are_fine(kernel):
    for cell in ("# just a comment", "\n\n   \n", "", "# a\n\n# b\n"):
        r = kernel.run(cell)
        assert r.status == "ok" and r.stdout == r.stderr == ""
    assert kernel.run("echo next").stdout == "next\n"
