"""The sessions panel's comm (target sandbox_kernel.sessions), driven as JupyterLab drives it:
comm_open and comm_msg on the shell channel, snapshots back on iopub."""

import queue
import time
import uuid

import pytest

from harness import processes_named, wait_until

TARGET = "sandbox_kernel.sessions"


@pytest.fixture
def panel(new_kernel, tmp_path):
    k = new_kernel()
    comm_id = uuid.uuid4().hex
    kind, content = k.comm("comm_open", {"comm_id": comm_id, "target_name": TARGET, "data": {}})
    assert kind == "comm_msg" and content["comm_id"] == comm_id

    def ask(**data):
        kind, content = k.comm("comm_msg", {"comm_id": comm_id, "data": data})
        assert kind == "comm_msg"
        return content["data"]

    return k, ask, content["data"], comm_id


def rows(snapshot):
    return {r["name"]: r for r in snapshot["sessions"]}


def test_open_answers_with_the_sessions(panel, tmp_path):
    _k, _ask, first, _id = panel
    assert first["current"] == "default" and first["error"] is None
    default = rows(first)["default"]
    assert default["current"] is True and default["cwd"] == str(tmp_path) and default["state"] == "idle"
    assert default["jobs"] == 0 and len(default["created"]) == 8


def test_an_unknown_target_is_closed(new_kernel):
    k = new_kernel()
    kind, content = k.comm("comm_open", {"comm_id": "x1", "target_name": "jupyter.widget", "data": {}})
    assert kind == "comm_close" and content["comm_id"] == "x1"
    assert k.run("echo fine").stdout == "fine\n"


def test_use_restart_and_delete_from_the_panel(panel):
    k, ask, _first, _id = panel
    tag = f"sk-panel-{uuid.uuid4().hex[:8]}"
    k.run("%session create build --cwd /tmp --env MODE=ci")
    k.run(f"%%session build\nexport LATER=1; bash -c 'exec -a {tag} sleep 300' &")
    snap = ask(action="list")
    assert rows(snap)["build"]["cwd"] == "/tmp" and rows(snap)["build"]["jobs"] == 1

    snap = ask(action="use", name="build")
    assert snap["error"] is None and snap["current"] == "build" and rows(snap)["build"]["current"] is True
    r = k.run("echo $PWD $MODE $LATER")
    assert r.stdout == "/tmp ci 1\n" and r.metadata["sandbox"]["session"] == "build"

    snap = ask(action="restart", name="build")
    assert snap["error"] is None and rows(snap)["build"]["jobs"] == 0
    assert wait_until(lambda: not processes_named(tag), 2)
    assert k.run("echo ${LATER:-gone}").stdout == "gone\n"

    k.run(f"bash -c 'exec -a {tag} sleep 300' &")
    snap = ask(action="delete", name="build")
    assert snap["error"] is None and snap["current"] == "default" and set(rows(snap)) == {"default"}
    assert wait_until(lambda: not processes_named(tag), 2)
    assert k.run("echo here").reply["status"] == "ok"


@pytest.mark.parametrize(
    "request_, error",
    [
        ({"action": "delete", "name": "default"}, "the session 'default' cannot be deleted"),
        ({"action": "use", "name": "nosuch"}, "no session named 'nosuch'"),
        ({"action": "restart", "name": "../x"}, "restart: '../x' is not a session name"),
        ({"action": "explode"}, "unknown request 'explode'"),
        ({}, "unknown request None"),
    ],
)
def test_bad_requests_get_one_line_and_change_nothing(panel, request_, error):
    k, ask, first, _id = panel
    snap = ask(**request_)
    assert error in snap["error"] and "\n" not in snap["error"]
    assert snap["sessions"] == first["sessions"] and snap["current"] == "default"
    assert k.run("echo fine").stdout == "fine\n"


def test_while_a_cell_runs_the_panel_lists_and_refuses_to_delete(panel):
    k, ask, _first, _id = panel
    k.run("%session create other")
    msg_id = k.kc.execute("sleep 2; echo slept")
    time.sleep(0.5)
    began = time.monotonic()
    snap = ask(action="list")
    assert time.monotonic() - began < 1  # answered while the cell runs, not after it
    assert rows(snap)["default"]["state"] == "running"
    refused = ask(action="delete", name="other")
    assert "a cell is running" in refused["error"] and "other" in rows(refused)
    assert ask(action="use", name="other")["current"] == "other"  # takes effect from the next cell
    while True:
        reply = k.kc.get_shell_msg(timeout=10)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    assert reply["content"]["status"] == "ok" and reply["metadata"]["sandbox"]["session"] == "default"
    assert k.run("true").metadata["sandbox"]["session"] == "other"


def test_closed_comm_is_no_longer_answered(panel):
    k, ask, _first, comm_id = panel
    k.kc.shell_channel.send(k.kc.session.msg("comm_close", {"comm_id": comm_id, "data": {}}))
    with pytest.raises(queue.Empty):
        k.comm("comm_msg", {"comm_id": comm_id, "data": {"action": "list"}}, timeout=1)
    assert k.run("echo fine").stdout == "fine\n"



def test_no_subshells_are_offered(new_kernel):
    # JupyterLab sends comm messages on a subshell when a kernel offers subshells, and they would
    # run on a thread of their own; the kernel's sessions live on one event loop.
    k = new_kernel()
    assert "kernel subshells" not in k.request("kernel_info").get("supported_features", [])
    assert k.comm("comm_open", {"comm_id": "s1", "target_name": TARGET, "data": {}})[0] == "comm_msg"
