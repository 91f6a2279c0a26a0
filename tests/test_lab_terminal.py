"""A terminal into the sandbox in a real JupyterLab (headless chromium): opened from the sessions
panel or the command palette, typed into as a user types, and checked from the host: what it
writes lands in the notebook's directory, what it runs is inside the sandbox, and closing its tab
ends its processes."""

import json
import urllib.request
import uuid

import pytest
from playwright.sync_api import expect

from harness import processes_named, wait_until
from test_lab_extension import browser, lab, show_sessions_panel  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(120)
TERMINAL = ".jp-SandboxTerminal"


@pytest.fixture
def page(browser, lab):  # noqa: F811
    """The lab's notebook n.ipynb in a fresh page and workspace, its sandbox kernel up."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(lab.url(f"lab/workspaces/{uuid.uuid4().hex}/tree/n.ipynb"))
    expect(page.locator(".jp-SandboxIndicator[data-sandbox-mode='isolated']")).to_be_visible(timeout=45_000)
    yield page
    context.close()


def type_into(page, terminal, line):
    terminal.locator(".xterm").click()
    page.keyboard.type(line)
    page.keyboard.press("Enter")


def open_from_palette(page):
    """A terminal opened as a user does from the command palette, the notebook in front."""
    page.locator(".jp-Notebook").first.click()
    page.keyboard.press("Control+Shift+C")
    page.keyboard.type("New Terminal in the Sandbox")
    page.keyboard.press("Enter")
    terminal = page.locator(TERMINAL)
    expect(terminal).to_be_visible()
    return terminal


def test_a_terminal_from_the_sessions_panel_runs_inside_the_sandbox(lab, page):  # noqa: F811
    panel = show_sessions_panel(page)
    expect(panel.locator(".jp-SandboxSessions-row")).to_have_count(1)
    panel.locator(".jp-SandboxSessions-terminal").click()
    terminal = page.locator(TERMINAL)
    expect(terminal).to_be_visible()
    expect(page.locator(".lm-TabBar-tab.lm-mod-current", has_text="Terminal in the sandbox")).to_be_visible()
    # What a user types, as a user types it; then the host's view of its effects.
    type_into(page, terminal, f"id -u > uid.txt; cat {lab.root / 'n.ipynb'} > seen.txt 2>&1; sleep 5432.25 &")
    uid = lab.root / "uid.txt"
    assert wait_until(lambda: uid.exists() and uid.read_text().strip(), 15), "the typed line did not run"
    assert uid.read_text() == "0\n"  # the sandbox's root ...
    assert wait_until(lambda: processes_named("\0" + "5432.25"), 10)
    (sleeper,) = processes_named("\0" + "5432.25")
    with open(f"/proc/{sleeper}/status") as f:
        assert next(line.split()[1] for line in f if line.startswith("Uid:")) != "0"  # ... is not the host's
    assert '"cells"' in (lab.root / "seen.txt").read_text()  # the notebook's directory is its cwd
    # Closing the tab ends the shell and what it started.
    page.locator(".lm-TabBar-tab.lm-mod-current .lm-TabBar-tabCloseIcon").click()
    assert wait_until(lambda: not processes_named("\0" + "5432.25"), 10), "the terminal's job outlived its tab"


@pytest.fixture
def screen_reader_mode(lab):  # noqa: F811
    """The user's terminal setting (before the page loads it): xterm.js's lines then are in the DOM."""
    request = urllib.request.Request(lab.url("lab/api/settings/@jupyterlab/terminal-extension:plugin"), method="PUT",
                                     data=json.dumps({"raw": '{"screenReaderMode": true}'}).encode())
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.status == 204


def test_a_terminal_from_the_palette_shows_what_the_shell_prints_and_its_exit(lab, screen_reader_mode, page):  # noqa: F811
    terminal = open_from_palette(page)
    type_into(page, terminal, "echo sum-$((40+2)) > sum.txt; exit 3")
    assert wait_until(lambda: (lab.root / "sum.txt").exists(), 15)
    assert (lab.root / "sum.txt").read_text() == "sum-42\n"
    lines = terminal.locator(".xterm-accessibility-tree")
    expect(lines).to_contain_text("[the shell exited with status 3]")
    expect(lines).to_contain_text("echo sum-$((40+2))")


def test_a_terminal_outlives_its_notebooks_tab_and_ends_with_the_page(lab, page):  # noqa: F811
    terminal = open_from_palette(page)
    type_into(page, terminal, "sleep 6543.25 &")
    assert wait_until(lambda: processes_named("\0" + "6543.25"), 15)
    # The notebook's tab closes (its kernel goes on): the terminal has a connection of its own.
    page.locator(".lm-TabBar-tab", has_text="n.ipynb").locator(".lm-TabBar-tabCloseIcon").click()
    page.locator(".jp-Dialog button", has_text="Discard").click()  # (its kernel's language_info changed it)
    expect(page.locator(".jp-NotebookPanel")).to_have_count(0)
    type_into(page, terminal, "echo alive > alive.txt")
    assert wait_until(lambda: (lab.root / "alive.txt").exists(), 15), "the terminal died with the notebook's tab"
    # A reloaded page cannot reattach to the shell: it ends with the page.
    page.reload()
    assert wait_until(lambda: not processes_named("\0" + "6543.25"), 15), "the terminal's job outlived its page"
