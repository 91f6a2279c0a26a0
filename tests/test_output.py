"""Output reaches the frontend byte-exact, as it happens, on the stream it was written to."""

import hashlib

import pytest


def test_stdout_and_stderr_arrive_as_their_own_streams(kernel):
    r = kernel.run("echo out; echo err >&2")
    assert r.stdout == "out\n" and r.stderr == "err\n"


@pytest.mark.parametrize(
    "cell, expected",
    [
        ("printf abc", "abc"),
        (r"printf 'a\n\n'", "a\n\n"),
        (r"printf 'a\0b\0\n'", "a\0b\0\n"),
        (r"printf 'bad\xff\xfe end\n'", "bad\ufffd\ufffd end\n"),
        (r"printf '10%%\r50%%\r100%%\n'", "10%\r50%\r100%\n"),
        (r"printf '\e[1;31mred\e[0m\n'", "\x1b[1;31mred\x1b[0m\n"),
        (r"printf 'cut \xe2\x82'", "cut \ufffd"),
    ],
)
def test_output_is_byte_exact(kernel, cell, expected):
    r = kernel.run(cell)
    assert r.status == "ok"
    assert r.stdout == expected


def test_utf8_character_split_across_two_writes_arrives_whole(kernel):
    r = kernel.run(r"printf '\xe2'; sleep 0.3; printf '\x82\xac\n'")
    assert r.stdout == "€\n"


def test_ten_megabytes_arrive_intact(kernel):
    r = kernel.run("head -c 7500000 /dev/urandom | base64 > big.b64; sha256sum < big.b64 >&2; cat big.b64; rm big.b64")
    assert len(r.stdout) > 10_000_000
    assert hashlib.sha256(r.stdout.encode()).hexdigest() == r.stderr.split()[0]


def test_output_streams_while_the_command_runs(kernel):
    r = kernel.run("echo a; sleep 2; echo b")
    (first_time, first), *_ = r.streams("stdout")
    assert first["text"] == "a\n"
    assert first_time < 1.0 <= 2.0 <= r.elapsed


def test_a_flood_is_coalesced_into_few_large_messages(kernel):
    r = kernel.run("seq 1 1000000")
    assert r.stdout == "".join(f"{i}\n" for i in range(1, 1000001))
    assert len(r.streams("stdout")) < 100
    # None larger than the README's "messages of up to 1 MB" (max_message_bytes).
    assert max(len(c["text"].encode()) for _t, c in r.streams("stdout")) <= 1 << 20


def test_kernel_memory_stays_bounded_under_a_flood(new_kernel):
    k = new_kernel("--SandboxKernel.max_output_bytes=1000000")
    r = k.run("head -c 400000000 /dev/zero | tr '\\0' x; echo finished >&2")
    assert r.stderr == "finished\n"
    with open(f"/proc/{k.pid}/status") as f:
        peak_kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    assert peak_kb < 150_000, f"kernel peak RSS {peak_kb} kB"


def test_a_flood_of_multibyte_characters_is_cut_between_characters(kernel):
    r = kernel.run("yes '€ü' | head -c 6000000")
    assert r.stdout == "€ü\n" * 1_000_000
    assert max(len(c["text"].encode()) for _t, c in r.streams("stdout")) <= 1 << 20


def test_kernel_memory_stays_bounded_under_a_flood_at_the_default_cap(new_kernel):
    # 200 MB, all of it forwarded (the default cap is 256 MiB): the kernel holds a message at a
    # time, never the flood.
    k = new_kernel()
    r = k.run("head -c 200000000 /dev/zero | tr '\\0' x; echo finished >&2", timeout=120, keep_text=False)
    sizes = [c["text"] for _t, c in r.streams("stdout")]
    assert sum(sizes) == 200_000_000 and max(sizes) <= 1 << 20
    with open(f"/proc/{k.pid}/status") as f:
        peak_kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    assert peak_kb < 150_000, f"kernel peak RSS {peak_kb} kB"


def test_output_past_the_cap_is_dropped_with_a_notice_while_the_command_runs_on(new_kernel):
    k = new_kernel("--SandboxKernel.max_output_bytes=100000")
    r = k.run("yes | head -c 5000000; echo 'ran to the end' >&2")
    assert r.status == "ok"
    assert r.stdout.startswith("y\ny\n")
    assert "passed the 100000 byte limit" in r.stdout
    assert len(r.stdout) < 100_000 + 500
    assert r.stderr == "ran to the end\n"
    assert k.run("echo next").stdout == "next\n"


def test_text_that_looks_like_the_protocol_cannot_end_a_cell(kernel):
    cell = r"""printf 'DONE\0deadbeef\0%s\0\0' 0
printf 'DONE\0' >&2
PS1='$ '; PROMPT_COMMAND='echo prompt'
printf '\e]0;title\a\x04\x1a\n'
sleep 1
echo after"""
    r = kernel.run(cell)
    assert r.status == "ok"
    assert r.stdout == "DONE\0deadbeef\0" + "0\0\0" + "\x1b]0;title\x07\x04\x1a\n" + "after\n"
    assert r.stderr == "DONE\0"
    assert r.elapsed >= 1.0
    assert kernel.run("echo next").stdout == "next\n"


def test_output_that_begins_like_the_kernels_hidden_trap_text_still_arrives_at_once(kernel):
    # Under set -v the kernel leaves its trap commands (they start "{ \\__sk_") out of stderr; a
    # cell's own text that begins the same way is only held for a moment, never lost.
    r = kernel.run(r"printf '{ \\__sk' >&2; sleep 2; printf ' done\n' >&2")
    assert r.stderr == "{ \\__sk done\n"
    (first_time, first), *_ = r.streams("stderr")
    assert first["text"] == "{ \\__sk" and first_time < 1.0
