"""`display` inside the session sends rich output; the bytes are read there, not by the kernel."""

import base64
import re
from html.parser import HTMLParser

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
)


def test_display_a_png_file_by_a_path_relative_to_the_sessions_cwd(kernel):
    b64 = base64.b64encode(PNG).decode()
    r = kernel.run(f"mkdir -p pics/sub && echo {b64} | base64 -d > pics/dot.png && cd pics/sub && display ../dot.png; cd {kernel.cwd}")
    assert r.status == "ok"
    assert r.displays == [{"data": {"image/png": b64}, "metadata": {}, "transient": {}}]


def test_display_html_and_markdown_files(kernel):
    r = kernel.run("printf '<b>bold</b>' > page.html; printf '# Title\\n\\n*so*' > notes.md; display page.html; display --markdown notes.md")
    assert [d["data"] for d in r.displays] == [{"text/html": "<b>bold</b>"}, {"text/html": "<h1>Title</h1>\n<p><em>so</em></p>\n"}]


def test_an_svg_from_a_pipe_is_shown_as_an_image(kernel):
    svg = '<svg xmlns="http://www.w3.org/2000/svg"/>\n'
    r = kernel.run(f"printf '%s\\n' '{svg.strip()}' | display --mime image/svg+xml")
    b64 = base64.b64encode(svg.encode()).decode()
    assert r.displays[0]["data"] == {"text/html": f'<img src="data:image/svg+xml;base64,{b64}" alt="SVG image">'}


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


ACTIVE_HTML = """<p>kept <b>text</b></p>
<script>document.title = 'pwned'</script>
<img src=x onerror="alert(1)"><img src="data:image/png;base64,AAAA" onload="alert(2)">
<a href="javascript:alert(3)">js</a><a href=" JaVaScRiPt:alert(4)">js2</a><a href="data:text/html,<script>alert(5)</script>">data</a>
<iframe src="/lab"></iframe><object data="x.swf"></object><embed src="x.swf"><form action="/api/terminals" method="post"><input name=a></form>
<svg><script>alert(6)</script><a xlink:href="javascript:alert(7)"><text>t</text></a></svg>
<div style="position:fixed;inset:0" id="x" class="jp-Dialog" data-commandlinker-command="terminal:create-new" onclick="alert(8)">div</div>
<base href="http://evil/"><meta http-equiv="refresh" content="0;url=javascript:alert(9)"><link rel=stylesheet href=x.css><style>*{}</style>
"""
INERT_TAGS = {"p", "b", "img", "a", "div", "h1", "em", "table", "tr", "td"}
SAFE_URL = re.compile(r"^(https?:|mailto:|data:image/(png|jpeg|gif|webp|svg\+xml);|[^:]*$)", re.I)


def active_parts(html):
    """What a browser could run, load as a document, submit or restyle in this HTML (read by
    Python's own parser, not by the sanitiser under test)."""
    found = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag not in INERT_TAGS:
                found.append(f"<{tag}>")
            for name, value in attrs:
                if name in ("href", "src"):
                    if not SAFE_URL.match((value or "").strip()):
                        found.append(f"{name}={value}")
                elif name not in ("alt", "rel", "title"):
                    found.append(name)

    Parser().feed(html)
    return found


def test_html_is_sanitised_and_keeps_its_inert_part(kernel):
    (kernel.cwd / "active.html").write_text(ACTIVE_HTML)
    r = kernel.run("display active.html")
    assert r.status == "ok" and r.stderr == ""
    (html,) = [d["data"]["text/html"] for d in r.displays]
    assert active_parts(html) == [] and "<" not in re.sub(r"<[^>]*>", "", html)
    assert "<p>kept <b>text</b></p>" in html and '<img src="data:image/png;base64,AAAA">' in html and "<a" in html


def test_markdown_is_rendered_and_its_raw_html_sanitised(kernel):
    (kernel.cwd / "active.md").write_text("# Head\n\n[link](javascript:alert(1)) <img src=x onerror=alert(2)>\n\n" + ACTIVE_HTML)
    r = kernel.run("display active.md")
    (data,) = [d["data"] for d in r.displays]
    assert list(data) == ["text/html"]
    assert active_parts(data["text/html"]) == []
    assert "<h1>Head</h1>" in data["text/html"] and "kept <b>text</b>" in data["text/html"]


def test_an_svg_with_script_is_only_ever_an_image(kernel):
    svg = '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script></svg>'
    (kernel.cwd / "active.svg").write_text(svg)
    r = kernel.run("display active.svg")
    (data,) = [d["data"] for d in r.displays]
    # The markup travels inside a data: URL of an <img>, where no browser runs script.
    assert data == {"text/html": f'<img src="data:image/svg+xml;base64,{base64.b64encode(svg.encode()).decode()}" alt="SVG image">'}


def test_active_types_are_refused_with_one_line_and_the_cell_goes_on(kernel):
    for mime in ("application/javascript", "text/javascript", "application/vnd.jupyter.widget-view+json", "text/x-whatever"):
        r = kernel.run(f"echo 'document.title = 1' | display --mime {mime}; echo after")
        assert (r.status, r.displays, r.stdout) == ("ok", [], "after\n"), mime
        assert r.stderr.startswith(f"display: {mime} refused: the browser would run it") and r.stderr.count("\n") == 1, r.stderr


def test_trusted_rich_output_forwards_as_is(new_kernel):
    k = new_kernel("--SandboxKernel.trusted_rich_output=True")
    r = k.run("echo '<script>1</script>' | display --html; echo 'x=1' | display --mime application/javascript; echo '<svg/>' | display --svg")
    assert [d["data"] for d in r.displays] == [{"text/html": "<script>1</script>\n"}, {"application/javascript": "x=1\n"},
                                               {"image/svg+xml": "<svg/>\n"}]


def test_a_document_too_large_to_check_is_refused_with_one_line(kernel):
    r = kernel.run("head -c 2000000 /dev/zero | tr '\\0' x | display --markdown; echo after")
    assert (r.status, r.displays, r.stdout) == ("ok", [], "after\n")
    assert r.stderr == "display: text/markdown of 2.0 MB is too large to check (at most 1 MiB); split it, or show it as text/plain\n"
