"""A cell's attacks on the programs around the sandbox, in a real JupyterLab (headless chromium).

What a cell displays must not run in the page, where it would have the server's token: the page
is checked, not only the messages (a marker the scripts would set, requests they would make to
a loopback server of the test's). A save through a link the cell planted is refused, and
JupyterLab says why."""

import http.server
import json
import threading
import uuid

import pytest
from playwright.sync_api import expect

from test_lab_extension import browser, lab, notebook, run_cell  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def open_notebook(browser):  # noqa: F811
    """Opens a notebook in a fresh page and JupyterLab workspace (no other test's notebook comes
    back in front of it); waits until its sandbox kernel is up."""
    contexts = []

    def open_(server, name):
        context = browser.new_context()
        contexts.append(context)
        page = context.new_page()
        page.goto(server.url(f"lab/workspaces/{uuid.uuid4().hex}/tree/{name}"))
        expect(page.locator(".jp-SandboxIndicator[data-sandbox-mode='isolated']")).to_be_visible(timeout=45_000)
        return page

    yield open_
    for context in contexts:
        context.close()


@pytest.fixture
def listener():
    """A loopback HTTP server that records the paths asked of it."""
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            self.send_response(404)
            self.send_header("Access-Control-Allow-Origin", "*")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def attacks(base):
    """Each way a page's output could run script; each one would set window.__pwned and ask base."""
    def run(name):
        return f"window.__pwned='{name}';document.title='pwned';fetch('{base}/{name}')"
    html = f"""<p>inert <b>part</b> of the page</p><img src="{base}/inert.png" alt="allowed image">
<script>{run('script')}</script>
<img src="x" onerror="{run('onerror')}">
<svg><script>{run('svg-script')}</script></svg><svg onload="{run('svg-onload')}"></svg>
<iframe srcdoc="<script>parent.{run('iframe')}</script>"></iframe>
<details open ontoggle="{run('ontoggle')}"><summary>s</summary></details>
<object data="javascript:{run('object')}"></object><embed src="javascript:{run('embed')}">"""
    markdown = f"# md heading\n\n<img src=\"x\" onerror=\"{run('md-onerror')}\">\n\n<script>{run('md-script')}</script>\n"
    svg = f'<svg xmlns="http://www.w3.org/2000/svg" onload="{run("svg-file")}"><script>{run("svg-file-script")}</script></svg>'
    return html, markdown, svg


def test_scripts_in_displayed_output_do_not_run_in_the_page(lab, open_notebook, listener):  # noqa: F811
    base, seen = listener
    html, markdown, svg = attacks(base)
    for name, text in (("page.html", html), ("notes.md", markdown), ("pic.svg", svg)):
        (lab.root / name).write_text(text)
    nb = notebook("sandbox", "Bash (sandbox)", "bash")
    cells = ["display page.html; display notes.md; display pic.svg",
             f"echo \"window.__pwned='js';fetch('{base}/js')\" | display --mime application/javascript; echo went on"]
    nb["cells"] = [{"cell_type": "code", "id": f"c{i}", "source": source, "metadata": {}, "outputs": [],
                    "execution_count": None} for i, source in enumerate(cells)]
    (lab.root / "active.ipynb").write_text(json.dumps(nb))
    page = open_notebook(lab, "active.ipynb")

    outputs = run_cell(page, 0).locator(".jp-OutputArea-output")
    expect(outputs.nth(0)).to_contain_text("inert part of the page")
    expect(outputs.nth(1).locator("h1")).to_have_text("md heading")
    expect(outputs.nth(2).locator("img[src^='data:image/svg+xml;base64,']")).to_have_count(1)
    cell = run_cell(page, 1)
    expect(cell.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")).to_contain_text(
        "display: application/javascript refused")
    expect(cell.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stdout']")).to_have_text("went on\n")

    # The allowed image was fetched: the page reaches the listener, so silence below means no script ran.
    page.wait_for_function("() => [...document.images].some(i => i.alt === 'allowed image' && i.complete)")
    page.wait_for_timeout(1000)
    assert page.evaluate("window.__pwned") is None
    assert page.title() != "pwned"
    assert set(seen) == {"/inert.png"}
    assert page.locator(".jp-OutputArea-output iframe, .jp-OutputArea-output script, .jp-OutputArea-output object").count() == 0


def test_a_save_through_a_planted_link_is_refused_and_jupyterlab_says_why(lab, open_notebook, tmp_path):  # noqa: F811
    host = tmp_path / "bashrc"
    host.write_text("# the host's ~/.bashrc\n")
    nb = notebook("sandbox", "Bash (sandbox)", "bash")
    nb["cells"] = [{"cell_type": "code", "id": "c0", "metadata": {}, "outputs": [], "execution_count": None,
                    "source": f"mv saveme.ipynb .saveme.ipynb && ln -s {host} saveme.ipynb"}]
    (lab.root / "saveme.ipynb").write_text(json.dumps(nb))
    page = open_notebook(lab, "saveme.ipynb")
    cell = run_cell(page, 0)
    assert (lab.root / "saveme.ipynb").is_symlink(), cell.locator(".jp-OutputArea").inner_text()
    page.keyboard.press("Control+s")
    # JupyterLab sees another file on disk and asks; the user who says "overwrite" is told why not.
    page.locator(".jp-Dialog").get_by_role("button", name="Overwrite").click()
    expect(page.locator(".jp-Dialog")).to_contain_text("Refused: 'saveme.ipynb' is a symbolic link", timeout=15_000)
    assert host.read_text() == "# the host's ~/.bashrc\n"
