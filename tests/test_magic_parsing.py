"""Unit tests of magic parsing (pure); the kernel tests drive the same through a real kernel."""

import pytest

from sandbox_kernel.magics import Magic, MagicError, split_cell


def test_magics_only_at_the_top():
    magics, bash = split_cell("%session create b --cwd /x --env A=1 --env=B=2=3\n%session use b\nmake\n%session list")
    assert magics == [Magic("create", "b", "/x", (("A", "1"), ("B", "2=3"))), Magic("use", "b")]
    assert bash == "make\n%session list"


def test_other_percent_lines_are_bash():
    assert split_cell("%1\necho") == ([], "%1\necho")
    assert split_cell("%vim") == ([], "%vim")
    assert split_cell("%sessions") == ([], "%sessions")


def test_cell_magic_must_be_first():
    assert split_cell("%%session b\necho") == ([Magic("cell", "b")], "echo")
    with pytest.raises(MagicError, match="must be the first line"):
        split_cell("%session list\n%%session b")


@pytest.mark.parametrize(
    "line, message",
    [
        ("%session create", "usage: %session create NAME"),
        ("%session create a --cwd", "--cwd needs a value"),
        ("%session create a --bogus", "unknown argument '--bogus'"),
        ("%session create a --env 1X=2", "'1X' is not a variable name"),
        ("%session create a 'b", "No closing quotation"),
        ("%session use", "usage: %session use NAME"),
        ("%session restart a b", "usage: %session restart [NAME]"),
        ("%session list extra", "unexpected argument 'extra'"),
        ("%sandbox nonsense", "unknown argument 'nonsense'"),
    ],
)
def test_bad_magic_lines(line, message):
    with pytest.raises(MagicError, match=message.replace("[", r"\[").replace("]", r"\]")):
        split_cell(line)
