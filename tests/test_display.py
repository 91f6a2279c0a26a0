"""`display` inside the session sends rich output; the bytes are read there, not by the kernel."""

import base64

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
)


def test_display_a_png_file_by_a_path_relative_to_the_sessions_cwd(kernel):
    b64 = base64.b64encode(PNG).decode()
    r = kernel.run(f"mkdir -p pics/sub && echo {b64} | base64 -d > pics/dot.png && cd pics/sub && display ../dot.png; cd {kernel.cwd}")
    assert r.status == "ok"
    assert r.displays == [{"data": {"image/png": b64}, "metadata": {}, "transient": {}}]


def test_display_html_and_markdown_files(kernel):
    r = kernel.run("printf '<b>bold</b>' > page.html; printf '# Title' > notes.md; display page.html; display --markdown notes.md")
    assert [d["data"] for d in r.displays] == [{"text/html": "<b>bold</b>"}, {"text/markdown": "# Title"}]


def test_display_from_a_pipe_with_a_mime_type(kernel):
    r = kernel.run("echo '<svg xmlns=\"http://www.w3.org/2000/svg\"/>' | display --mime image/svg+xml")
    assert r.displays[0]["data"] == {"image/svg+xml": '<svg xmlns="http://www.w3.org/2000/svg"/>\n'}


def test_display_json(kernel):
    r = kernel.run("echo '{\"a\": [1, 2]}' | display --json")
    assert r.displays[0]["data"] == {"application/json": {"a": [1, 2]}}


def test_display_bad_input_is_one_clear_line(kernel):
    cases = {
        "display --mime 'not a type' x.png": "display: 'not a type' is not a MIME type\n",
        "display mystery.bin": "display: cannot tell the type of 'mystery.bin'; say it with --mime TYPE\n",
        "display --frobnicate": "display: unknown option '--frobnicate' (see display --help)\n",
        "echo x | display": "display: reading stdin needs a type, e.g. --mime image/svg+xml\n",
    }
    for cell, message in cases.items():
        r = kernel.run(cell)
        assert (r.status, r.stderr, r.displays) == ("error", message, []), cell
    r = kernel.run("display missing.png")
    assert r.status == "error" and "missing.png" in r.stderr and r.displays == []
