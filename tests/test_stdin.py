"""read asks the frontend when it allows stdin, and sees EOF at once when it does not."""


def test_read_sends_an_input_request(kernel):
    r = kernel.run('read -p "name? " who; echo "hello $who"', stdin=lambda prompt, password: "alice")
    assert r.input_requests == [{"prompt": "name? ", "password": False}]
    assert r.stdout == "hello alice\n"


def test_read_s_asks_for_a_password(kernel):
    r = kernel.run('read -s -p "secret? " pw; echo "${#pw} chars"', stdin=lambda prompt, password: "hunter2")
    assert r.input_requests == [{"prompt": "secret? ", "password": True}]
    assert r.stdout == "7 chars\n"


def test_without_stdin_reads_see_eof_at_once(kernel):
    r = kernel.run('read x; echo "read: $?"; cat; echo "cat: $?"; python3 -c "input()" 2>/dev/null; echo "python: $?"')
    assert r.stdout == "read: 1\ncat: 0\npython: 1\n"
    assert r.elapsed < 10


def test_redirected_reads_stay_bash_reads(kernel):
    r = kernel.run("printf 'l1\\nl2\\n' > lines; while read -r line; do echo \"<$line>\"; done < lines; "
                   "echo x | { read y; echo \"[$y]\"; }", stdin=lambda prompt, password: "never asked")
    assert r.stdout == "<l1>\n<l2>\n[x]\n"
    assert r.input_requests == []
