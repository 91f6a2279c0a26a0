"""The Jupyter Server extension (sandbox_kernel/server_extension.py), in a real `jupyter server` on
loopback (and, for the network, one on every address, as container images run it): a sandbox kernel that server started plants links and modules in its directory from a
cell, then the test saves, checkpoints, renames and deletes through the REST API as JupyterLab
would, and starts the stock python3 kernel there. The host files stay as they were. The server runs
as root and as an unprivileged user (from the user venv `make test` builds), each with files of
its own user to lose."""

import json
import os
import secrets
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest

from harness import TEST_USER, USER_VENV_PYTHON, JupyterAPI, TestHost, ensure_test_user, free_port, stop_server, user_dir, wait_until

pytestmark = pytest.mark.timeout(120)

NOTEBOOK = {"cells": [{"cell_type": "markdown", "id": "m", "metadata": {}, "source": "saved by the server"}],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
HOST_TEXT = "# the host's ~/.bashrc\n"


def owned_dir(flavor, prefix):
    """A fresh directory of the flavour's user: what the server, as that user, could write."""
    return Path(user_dir(prefix)) if flavor == "user" else Path(tempfile.mkdtemp(prefix=prefix))


def give(flavor, *paths):
    if flavor == "user":
        user = ensure_test_user()
        for path in paths:
            os.chown(path, user.pw_uid, user.pw_gid)


class Server(JupyterAPI):
    """`jupyter server` on a free loopback port, with a HOME of its own and Jupyter's dirs at their
    default places in it (no JUPYTER_* variable; the package's server config and kernelspecs are
    still found under sys.prefix), serving a project under that HOME, run as root from the test's
    venv or as the test user from the user venv."""

    def __init__(self, flavor, ip="127.0.0.1"):
        """ip: where it listens (127.0.0.1, as by default; 0.0.0.0, as container images start it)."""
        self.flavor = flavor
        base = owned_dir(flavor, "sk-server-")
        home = base / "home"
        self.root = home / "notebooks"
        for d in (home, self.root):
            d.mkdir()
            give(flavor, d)
        super().__init__(free_port(), secrets.token_hex(16))
        env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_")}
        env["HOME"] = str(home)
        env.pop("PYTHONSAFEPATH", None)
        self.log_path = base / "server.log"
        self.log = open(self.log_path, "wb")
        run_as = ["setpriv", f"--reuid={TEST_USER}", f"--regid={TEST_USER}", "--clear-groups", "--"] if flavor == "user" else []
        python = USER_VENV_PYTHON if flavor == "user" else sys.executable
        self.proc = subprocess.Popen(
            [*run_as, python, "-m", "jupyter_server", "--no-browser", "--allow-root", f"--ServerApp.ip={ip}",
             f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
             f"--ServerApp.root_dir={self.root}"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        if not wait_until(self._up, 30):
            self.stop()
            raise AssertionError(f"jupyter server did not start:\n{self.log_path.read_text()}")

    def _up(self):
        assert self.proc.poll() is None, f"jupyter server exited:\n{self.log_path.read_text()}"
        try:
            return self.api("GET", "api/status")[0] == 200
        except OSError:
            return False

    def stop(self):
        stop_server(self.proc, self.log)


@pytest.fixture(scope="module", params=["root", "user"])
def server(request):
    s = Server(request.param)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def sandbox(server):
    """A sandbox kernel the server started in its root directory."""
    return server.start_kernel("sandbox")


@pytest.fixture
def host(server):
    """A directory outside the server's root, standing for the home of the server's user: its
    files are the server's to write."""
    home = owned_dir(server.flavor, "sk-host-")
    (home / "bashrc").write_text(HOST_TEXT)
    give(server.flavor, home / "bashrc")
    return home


def save(server, path):
    return server.api("PUT", f"api/contents/{path}", {"type": "notebook", "format": "json", "content": NOTEBOOK})


def refused(reply, name):
    status, body = reply
    return status == 403 and body["message"].startswith(f"Refused: '{name}' is a symbolic link")


def host_unchanged(host):
    return sorted(p.name for p in host.iterdir()) == ["bashrc"] and (host / "bashrc").read_text() == HOST_TEXT


def test_save_and_checkpoint_of_a_plain_notebook_work(server):
    assert save(server, "plain.ipynb")[0] == 201
    assert json.loads((server.root / "plain.ipynb").read_text())["cells"][0]["source"] == ["saved by the server"]
    assert save(server, "plain.ipynb")[0] == 200
    status, checkpoint = server.api("POST", "api/contents/plain.ipynb/checkpoints")
    assert status == 201 and checkpoint["id"] == "checkpoint"
    assert (server.root / ".ipynb_checkpoints" / "plain-checkpoint.ipynb").read_text() == (server.root / "plain.ipynb").read_text()
    (server.root / "plain.ipynb").write_text("{}")
    give(server.flavor, server.root / "plain.ipynb")
    assert server.api("POST", "api/contents/plain.ipynb/checkpoints/checkpoint")[0] == 204
    assert json.loads((server.root / "plain.ipynb").read_text())["nbformat"] == 4
    assert server.api("PATCH", "api/contents/plain.ipynb", {"path": "renamed.ipynb"})[0] == 200
    assert (server.root / ".ipynb_checkpoints" / "renamed-checkpoint.ipynb").exists()
    assert server.api("DELETE", "api/contents/renamed.ipynb")[0] == 204


def test_checkpoint_through_a_link_the_cell_planted_is_refused(server, sandbox, host):
    assert save(server, "nb.ipynb")[0] == 201
    server.run_cell(sandbox, f"mkdir -p .ipynb_checkpoints && ln -sf {host}/bashrc .ipynb_checkpoints/nb-checkpoint.ipynb")
    assert refused(server.api("POST", "api/contents/nb.ipynb/checkpoints"), "nb-checkpoint.ipynb")
    # Revert to checkpoint would read the host file into the notebook, where the sandbox reads it.
    assert refused(server.api("POST", "api/contents/nb.ipynb/checkpoints/checkpoint"), "nb-checkpoint.ipynb")
    assert "bashrc" not in (server.root / "nb.ipynb").read_text() and "host" not in (server.root / "nb.ipynb").read_text()
    # The notebook directory's own .ipynb_checkpoints may be pinned by the sandbox (a mount point
    # cannot be replaced); a subdirectory's is the server extension's alone to refuse.
    server.run_cell(sandbox, "mkdir -p sub")
    assert save(server, "sub/nb.ipynb")[0] == 201
    server.run_cell(sandbox, f"rm -rf sub/.ipynb_checkpoints && ln -s {host} sub/.ipynb_checkpoints")
    assert refused(server.api("POST", "api/contents/sub/nb.ipynb/checkpoints"), ".ipynb_checkpoints")
    assert host_unchanged(host)


def test_save_through_a_link_the_cell_planted_is_refused(server, sandbox, host):
    server.run_cell(sandbox, f"rm -rf .ipynb_checkpoints; ln -sfn {host}/bashrc linked.ipynb; ln -sfn {host} away")
    reply = save(server, "linked.ipynb")
    assert refused(reply, "linked.ipynb"), reply
    assert reply[1]["message"].endswith(": linked.ipynb")
    assert refused(save(server, "away/new.ipynb"), "away")
    assert refused(server.api("PUT", "api/contents/away/up.txt", {"type": "file", "format": "text", "content": "x", "chunk": 2}), "away")
    assert refused(server.api("PUT", "api/contents/away/dir", {"type": "directory"}), "away")
    assert host_unchanged(host)


def test_rename_and_delete_through_a_link_are_refused(server, sandbox, host):
    (host / "victim").write_text("host data")
    give(server.flavor, host / "victim")
    assert save(server, "mine.ipynb")[0] == 201
    server.run_cell(sandbox, f"rm -rf .ipynb_checkpoints; ln -sfn {host} away2")
    assert refused(server.api("PATCH", "api/contents/mine.ipynb", {"path": "away2/mine.ipynb"}), "away2")
    assert refused(server.api("DELETE", "api/contents/away2/victim"), "away2")
    # Duplicating the link would copy the host file into the directory, where the sandbox reads it.
    assert refused(server.api("POST", "api/contents", {"copy_from": "away2/victim"}), "away2")
    assert (host / "victim").read_text() == "host data" and (server.root / "mine.ipynb").exists()
    (host / "victim").unlink()
    assert host_unchanged(host)


def test_a_link_swapped_in_while_the_server_checkpoints_is_never_followed(server, sandbox, host):
    assert save(server, "race.ipynb")[0] == 201
    # The cell flips the checkpoint between a file and a link as fast as rename(2) goes.
    server.run_cell(sandbox, f"rm -rf .ipynb_checkpoints; mkdir .ipynb_checkpoints; cd .ipynb_checkpoints; "
                             f"(while :; do ln -sfn {host}/bashrc l && mv -T l race-checkpoint.ipynb; "
                             f"echo {{}} > f && mv -T f race-checkpoint.ipynb; done) >/dev/null 2>&1 & echo $! > ../flipper.pid")
    try:
        statuses = {server.api("POST", "api/contents/race.ipynb/checkpoints")[0] for _ in range(60)}
    finally:
        server.run_cell(sandbox, "kill $(cat flipper.pid); cd ..; rm flipper.pid")
    assert statuses <= {201, 403} and statuses
    assert host_unchanged(host)


def test_a_module_planted_in_the_notebook_directory_does_not_run_in_a_python_kernel(server, sandbox):
    marker = owned_dir(server.flavor, "sk-marker-") / "ran-outside-the-sandbox"
    server.run_cell(sandbox, "mkdir -p planted && cat > planted/ipykernel_launcher.py <<'EOF'\n"
                             f"open({str(marker)!r}, 'w').write('planted module ran')\n"
                             "from ipykernel import kernelapp\nkernelapp.launch_new_instance()\nEOF")
    kernel = server.start_kernel("python3", "planted")
    try:
        r = server.run(kernel, "import os, sys; print(os.getcwd(), sys.flags.safe_path, {'', '.', os.getcwd()} & set(sys.path))")
    finally:
        server.api("DELETE", f"api/kernels/{kernel}")
    out = r.stdout
    assert r.status == "ok" and not marker.exists()
    # Its cwd is the notebook's directory, which is not on its sys.path (IPython >= 9.7 keeps it off too).
    assert out == f"{server.root / 'planted'} True set()\n"


@pytest.mark.parametrize("flavor", ["root", "user"])
def test_a_server_listening_on_every_address_is_out_of_its_kernels_reach(flavor):
    # As container images start it (jupyter lab --ip=0.0.0.0): the server is on the host's own
    # addresses too, one of which the test makes (this machine's end of a link to a test host).
    link = TestHost("import socket; s = socket.socket(); s.bind(('0.0.0.0', 8080)); s.listen(); "
                    "[c.close() for c, _ in iter(s.accept, None)]")
    server = Server(flavor, ip="0.0.0.0")
    try:
        status = urllib.request.Request(f"http://{link.own}:{server.port}/api/status", headers={"Authorization": f"token {server.token}"})
        with urllib.request.urlopen(status, timeout=10) as r:
            assert r.status == 200  # it answers there: the test can fail
        kernel = server.start_kernel("sandbox")
        out = server.run_cell(kernel, f"""for address in 127.0.0.1 10.0.2.2 {link.own}; do
  (exec 3<>/dev/tcp/$address/{server.port}) 2>/dev/null && echo "reached $address"
done
(exec 3<>/dev/tcp/{link.private}/8080) && echo "reached the test host"; true""")
        assert out == "reached the test host\n", out
    finally:
        server.stop()
        link.close()
