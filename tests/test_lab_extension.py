"""The JupyterLab extension (jupyter_extension/): a real Jupyter server, a real headless chromium.

The status bar indicator reads the kernel_info reply's "sandbox" field; a sandbox kernel shows
its isolation, an unprotected one also raises a notification, other kernels show nothing. The
"Sandbox sessions" sidebar panel lists the current kernel's sessions over a comm and uses,
restarts and deletes them."""

import json
import os
import re
import secrets
import subprocess
import sys
import urllib.request

import pytest
from playwright.sync_api import expect, sync_playwright

from harness import free_port, stop_server, wait_until

CHROMIUM = "/usr/bin/chromium"
# Without the networking flags chromium keeps calling home, which a closed network punishes.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
EXTENSION = os.path.join(sys.prefix, "share", "jupyter", "labextensions", "sandbox-kernel-indicator")
INDICATOR = ".jp-SandboxIndicator"
DANGER = re.compile(r"\bjp-SandboxIndicator-danger\b")
OFF_WARNING = "isolation is OFF"
SESSIONS = ".jp-SandboxSessions"
SESSIONS_TAB = ".jp-SideBar .lm-TabBar-tab[data-id='sandbox-kernel-sessions']"
ROW = ".jp-SandboxSessions-row"
DONE = re.compile(r"\[\d+\]")  # the input prompt of a cell that has run: [3]:
# A node's background colour, and --jp-error-color1 as computed (both rgb(...)).
ERROR_BACKGROUND = """n => {
    const probe = document.body.appendChild(document.createElement('div'));
    probe.style.backgroundColor = 'var(--jp-error-color1)';
    const wanted = getComputedStyle(probe).backgroundColor;
    probe.remove();
    return [getComputedStyle(n).backgroundColor, wanted];
}"""

pytestmark = pytest.mark.timeout(90)


def notebook(kernel, display_name, language):
    return {"cells": [], "metadata": {"kernelspec": {"name": kernel, "display_name": display_name, "language": language}},
            "nbformat": 4, "nbformat_minor": 5}


class LabServer:
    """`jupyter lab` on a free loopback port, with a HOME of its own and Jupyter's dirs at their
    default places in it (no JUPYTER_* variable; the extension and the kernelspecs are still found
    under sys.prefix/share/jupyter), serving a project under that HOME."""

    def __init__(self, base, kernel_config=""):
        home = base / "home"
        self.root = home / "notebooks"
        # The kernel reads its options from the Jupyter config path only, where ~/.jupyter comes first.
        self.config = home / ".jupyter"
        for d in (home, self.root, self.config):
            d.mkdir()
        (self.root / "n.ipynb").write_text(json.dumps(notebook("sandbox", "Bash (sandbox)", "bash")))
        (self.root / "py.ipynb").write_text(json.dumps(notebook("python3", "Python 3", "python")))
        (self.config / "jupyter_sandbox_kernel_config.py").write_text(kernel_config)
        self.port = free_port()
        self.token = secrets.token_hex(16)
        env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_")}
        env["HOME"] = str(home)
        self.log = open(base / "server.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
             f"--ServerApp.root_dir={self.root}", "--LabApp.news_url=None",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        if not wait_until(self._up, 30):
            self.stop()
            raise AssertionError(f"jupyter lab did not start:\n{(base / 'server.log').read_text()}")

    def _up(self):
        assert self.proc.poll() is None, "jupyter lab exited"
        try:
            with urllib.request.urlopen(self.url("api/status"), timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def url(self, path):
        return f"http://127.0.0.1:{self.port}/{path}?token={self.token}"

    def stop(self):
        stop_server(self.proc, self.log)


@pytest.fixture(scope="module")
def browser():
    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing: `make test` installs Debian's chromium"
    assert os.path.exists(os.path.join(EXTENSION, "package.json")), \
        f"the lab extension is not installed in {EXTENSION}: `make venv` builds and installs it"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    server = LabServer(tmp_path_factory.mktemp("lab"))
    yield server
    server.stop()


@pytest.fixture
def open_notebook(browser):
    """Opens a notebook of a server in a fresh page and waits until its kernel is idle."""
    contexts = []

    def open_(server, name):
        context = browser.new_context()
        contexts.append(context)
        page = context.new_page()
        page.goto(server.url(f"lab/tree/{name}"))
        # The notebook in front (the workspace may bring back others), in its toolbar itself: a
        # narrow one (the sidebar open) also has a copy in its overflow popup.
        idle = page.locator(".jp-NotebookPanel-toolbar:visible .jp-Notebook-ExecutionIndicator[data-status='idle']")
        expect(idle).to_be_visible(timeout=45_000)
        return page

    yield open_
    for context in contexts:
        context.close()


def test_isolated_kernel_shows_isolated(lab, open_notebook):
    page = open_notebook(lab, "n.ipynb")
    indicator = page.locator(f"{INDICATOR}[data-sandbox-mode]")
    expect(indicator).to_have_attribute("data-sandbox-mode", "isolated", timeout=15_000)
    expect(indicator).to_have_text("sandbox: isolated")
    expect(indicator).to_be_visible()
    expect(indicator).not_to_have_class(DANGER)
    title = indicator.get_attribute("title")
    assert "isolation: isolated" in title and "namespaces: " in title, title


def test_console_shows_isolated(lab, browser):
    page = browser.new_page()
    try:
        page.goto(lab.url("lab") + "&reset")  # an empty workspace: the launcher
        page.locator(".jp-LauncherCard[data-category='Console'][title='Bash (sandbox)']").click()
        indicator = page.locator(f"{INDICATOR}[data-sandbox-mode]")
        expect(indicator).to_have_attribute("data-sandbox-mode", "isolated", timeout=45_000)
        expect(indicator).to_have_text("sandbox: isolated")
    finally:
        page.context.close()


def test_other_kernels_show_nothing_and_tabs_switch(lab, open_notebook):
    page = open_notebook(lab, "py.ipynb")
    page.wait_for_timeout(1000)  # the kernel_info reply has long come back by now
    expect(page.locator(INDICATOR)).to_have_count(1)  # the extension is there, its item hidden
    expect(page.locator(INDICATOR)).to_be_hidden()
    expect(page.locator(f"{INDICATOR}[data-sandbox-mode]")).to_have_count(0)

    # Switching tabs follows the current notebook's kernel.
    page.locator(".jp-DirListing-content").get_by_text("n.ipynb", exact=True).dblclick()
    expect(page.locator(f"{INDICATOR}[data-sandbox-mode='isolated']")).to_be_visible(timeout=45_000)
    page.locator(".lm-TabBar-tabLabel", has_text="py.ipynb").click()
    expect(page.locator(INDICATOR)).to_be_hidden()
    page.locator(".lm-TabBar-tabLabel", has_text="n.ipynb").first.click()
    expect(page.locator(f"{INDICATOR}[data-sandbox-mode='isolated']")).to_be_visible()


def test_isolation_off_warns(tmp_path, open_notebook):
    server = LabServer(tmp_path, kernel_config='c.Sandbox.isolation = "off"\n')
    try:
        page = open_notebook(server, "n.ipynb")
        indicator = page.locator(f"{INDICATOR}[data-sandbox-mode]")
        expect(indicator).to_have_attribute("data-sandbox-mode", "off", timeout=15_000)
        expect(indicator).to_have_text("sandbox: isolation OFF")
        expect(indicator).to_have_class(DANGER)
        # The warning style: JupyterLab's error colour as the background.
        background, error_color = indicator.evaluate(ERROR_BACKGROUND)
        assert background == error_color != "rgba(0, 0, 0, 0)", (background, error_color)
        assert OFF_WARNING in indicator.get_attribute("title")
        # One notification, its text the kernel's warning.
        expect(page.locator(".Toastify__toast", has_text=OFF_WARNING)).to_have_count(1, timeout=10_000)

        # A restart re-reads the kernel_info reply: the kernel now starts isolated.
        (server.config / "jupyter_sandbox_kernel_config.py").write_text("")
        page.locator("[data-command='notebook:restart-kernel']").click()
        page.locator(".jp-Dialog .jp-mod-accept").click()
        expect(indicator).to_have_attribute("data-sandbox-mode", "isolated", timeout=30_000)
        expect(indicator).not_to_have_class(DANGER)
    finally:
        server.stop()


def run_cell(page, index, wait=True):
    """Runs cell number index of the notebook in front with Shift+Enter (its source written in
    the file: no typing); returns that cell, once it has run unless not wait."""
    # The notebook in front: the workspace may bring back the other tests' notebooks, hidden.
    cell = page.locator(".jp-Notebook:visible").locator(".jp-CodeCell").nth(index)
    cell.locator(".jp-InputPrompt").click()  # selects it, in command mode
    page.keyboard.press("Shift+Enter")
    if wait:
        expect(cell.locator(".jp-InputPrompt")).to_have_text(DONE, timeout=20_000)
    return cell


def show_sessions_panel(page):
    """The sessions panel, opened by its sidebar tab unless the workspace brought it back open
    (a click would close it)."""
    panel = page.locator(SESSIONS)
    if not panel.is_visible():
        page.locator(SESSIONS_TAB).click()
    expect(panel).to_be_visible()
    return panel


def take_picture(page, path):
    """A screenshot, wide enough for every column of the panel and without the news prompt."""
    page.set_viewport_size({"width": 1400, "height": 760})
    no = page.locator(".Toastify__toast", has_text="Jupyter news").get_by_role("button", name="No", exact=True)
    if no.count():
        no.click()
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first.bounding_box()
    x, y = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 330, y, steps=5)
    page.mouse.up()
    page.locator(SESSIONS).evaluate("n => { for (let e = n; e; e = e.parentElement) e.scrollLeft = 0; }")
    page.wait_for_timeout(300)
    page.screenshot(path=path)


def stays_shown(page, node, text, seconds):
    """Checks that node shows text at every tenth of a second for so many seconds (expect() is
    satisfied by the first moment it does)."""
    for tenth in range(round(seconds * 10)):
        assert node.is_visible() and text in node.text_content(), f"gone after {tenth / 10} s"
        page.wait_for_timeout(100)


# The cells test_sessions_panel runs, in this order, between clicks in the panel; the third runs
# until the test creates the file RELEASE in the notebook's directory.
RELEASE = "release"
SESSION_CELLS = ["%session create build --cwd /tmp --env MODE=ci", "pwd; echo $MODE",
                 "until [ -e {release} ]; do sleep 0.1; done", "sleep 300 &",
                 "pwd; pgrep -fx 'sleep 300' || echo no sleep"]


def test_sessions_panel(lab, open_notebook, screenshot):
    # A notebook (and so a kernel) of its own: the other tests' kernel keeps only `default`.
    nb = notebook("sandbox", "Bash (sandbox)", "bash")
    release = lab.root / RELEASE
    nb["cells"] = [{"cell_type": "code", "id": f"c{i}", "source": source.format(release=release), "metadata": {},
                    "outputs": [], "execution_count": None} for i, source in enumerate(SESSION_CELLS)]
    (lab.root / "sessions.ipynb").write_text(json.dumps(nb))
    page = open_notebook(lab, "sessions.ipynb")
    # The execution indicator may say idle before the kernel's connection is up, and a cell run
    # then is dropped: the sandbox indicator appears once the kernel_info reply came through it.
    expect(page.locator(f"{INDICATOR}[data-sandbox-mode='isolated']")).to_be_visible(timeout=15_000)
    run_cell(page, 0)

    panel = show_sessions_panel(page)
    expect(panel.locator(".jp-SandboxSessions-header")).to_contain_text("sessions.ipynb")
    rows = panel.locator(ROW)
    default, build = (panel.locator(f"{ROW}[data-session='{name}']") for name in ("default", "build"))
    expect(rows).to_have_count(2, timeout=10_000)
    expect(default).to_have_attribute("data-current", "true")
    expect(build).to_have_attribute("data-current", "false")
    expect(build.locator(".jp-SandboxSessions-cwd")).to_have_text("/tmp")
    expect(default.locator("[data-action='use']")).to_be_disabled()
    expect(default.locator("[data-action='delete']")).to_be_disabled()  # never offered
    error = panel.locator(".jp-SandboxSessions-error")
    expect(error).to_be_hidden()

    # `use` from the panel: the next cell runs in build, with its cwd and env.
    build.locator("[data-action='use']").click()
    expect(build).to_have_attribute("data-current", "true")
    expect(default).to_have_attribute("data-current", "false")
    cell = run_cell(page, 1)
    expect(cell.locator(".jp-OutputArea-output")).to_have_text(re.compile(r"^/tmp\s+ci\s*$"))
    if screenshot:  # the README's picture: the status bar indicator and the panel, two sessions
        take_picture(page, screenshot)

    # While a cell runs the kernel refuses a restart, and the panel's line stays through the
    # panel's own refreshes: the one due after the cell before (the click usually comes first)
    # and the one when the panel is shown again (answered once the rows are drawn anew).
    cell = run_cell(page, 2, wait=False)
    running = cell.locator(".jp-InputPrompt")
    expect(running).to_have_text(re.compile(r"\[\*\]"))
    refusal = "a cell is running"
    build.locator("[data-action='restart']").click()
    expect(error).to_contain_text(refusal)
    stays_shown(page, error, refusal, 2.5)
    rows.first.evaluate("n => { n.dataset.stale = '' }")
    page.locator(SESSIONS_TAB).click()
    expect(panel).to_be_hidden()
    page.locator(SESSIONS_TAB).click()
    expect(panel.locator(f"{ROW}[data-stale]")).to_have_count(0)
    stays_shown(page, error, refusal, 0.5)
    # The next action's answer replaces it (`use` is carried out while a cell runs).
    default.locator("[data-action='use']").click()
    expect(default).to_have_attribute("data-current", "true")
    expect(error).to_be_hidden()
    build.locator("[data-action='use']").click()
    expect(build).to_have_attribute("data-current", "true")
    # The end of the cell takes it away: the reason no longer holds.
    build.locator("[data-action='restart']").click()
    expect(error).to_contain_text(refusal)
    expect(running).to_have_text(re.compile(r"\[\*\]"))
    release.touch()
    expect(running).to_have_text(DONE, timeout=15_000)
    expect(error).to_be_hidden()

    # A background job shows up after the cell (the refresh once the kernel is idle); deleting
    # build ends it, and default is current again.
    run_cell(page, 3)
    expect(build.locator(".jp-SandboxSessions-jobs")).to_have_text("1")
    build.locator("[data-action='delete']").click()
    expect(build).to_have_count(0)
    expect(rows).to_have_count(1)
    expect(default).to_have_attribute("data-current", "true")
    cell = run_cell(page, 4)
    output = re.compile(rf"^{re.escape(str(lab.root))}\s+no sleep\s*$")  # default's cwd; the job gone
    expect(cell.locator(".jp-OutputArea-output")).to_have_text(output)

    # A kernel restart ends every session: the panel opens a comm to the new kernel and shows
    # what it has, `default` alone. (0, 0 in command mode: the toolbar may be in its overflow.)
    run_cell(page, 0)
    expect(rows).to_have_count(2)
    page.locator(".jp-Notebook:visible").locator(".jp-CodeCell").nth(0).locator(".jp-InputPrompt").click()
    page.keyboard.press("0")
    page.keyboard.press("0")
    page.locator(".jp-Dialog .jp-mod-accept").click()
    expect(rows).to_have_count(1, timeout=30_000)
    expect(default).to_have_attribute("data-current", "true")


def test_sessions_panel_other_kernel(lab, open_notebook):
    page = open_notebook(lab, "py.ipynb")
    panel = show_sessions_panel(page)
    expect(panel.locator(".jp-SandboxSessions-header")).to_have_text("No sandbox kernel")
    expect(panel.locator(ROW)).to_have_count(0)
