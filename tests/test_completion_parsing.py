"""Unit tests of the pure text work behind completion (the kernel tests cover the real thing)."""

import pytest

from sandbox_kernel.completion import current_token, in_command_position, word_at


@pytest.mark.parametrize(
    "code, token",
    [("ech", (0, "ech")), ("ls -l fo", (6, "fo")), ("a=$(cat fi", (8, "fi")), ("echo 'x y", (8, "y")), ("x | gr", (4, "gr"))],
)
def test_current_token(code, token):
    assert current_token(code, len(code)) == token


@pytest.mark.parametrize(
    "code, start, expected",
    [("", 0, True), ("ls ", 3, False), ("a; ", 3, True), ("a && ", 5, True), ("x | ", 4, True), ("if true; then ", 14, True),
     ("echo $(", 7, True), ("sudo ", 5, False), ("a\n", 2, True)],
)
def test_in_command_position(code, start, expected):
    assert in_command_position(code, start) is expected


def test_word_at():
    assert word_at("cd /tmp", 1) == "cd"
    assert word_at("echo; git-status x", 12) == "git-status"
