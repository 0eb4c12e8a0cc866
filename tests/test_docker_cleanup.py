"""Nothing is left behind: containers and networks go away when a run is interrupted (Ctrl-C) or killed (SIGTERM,
SIGKILL: the session's reaper removes them); what a run killed together with its reaper leaves is swept by the
next one; closing a session leaves it clean."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import AUTH, REPO
from wasmfilter.envoy.protocol import wait_until
from wasmfilter.harness import docker

pytestmark = pytest.mark.docker

CHILD = textwrap.dedent("""
    import sys, threading
    from wasmfilter.harness.docker import DockerSession
    from wasmfilter.harness.stack import BackendOptions, StackSpec, start_stack
    from wasmfilter.manifest import load_manifest

    spec = StackSpec(manifest=load_manifest(sys.argv[1]), wasm_path=sys.argv[2])
    with DockerSession() as session:
        with start_stack(spec, backend="docker", options=BackendOptions(docker=session)) as stack:
            print("READY", session.id, stack.run_id, flush=True)
            threading.Event().wait()
""")
EMPTY = {"containers": [], "networks": []}


def _nothing_left(session: str) -> bool:
    # Once the owner is gone its reaper sweeps within moments: poll for that, never a fixed sleep.
    return wait_until(lambda: docker.leftovers(session=session) == EMPTY, timeout=30, interval=0.1)


def _start_child(wasm: str) -> tuple[subprocess.Popen, str, str]:
    # A process group of its own: the child and its reaper can be killed together.
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(AUTH), wasm], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the stack is ready (or the child died)
    if not line.startswith("READY"):
        proc.kill()
        raise AssertionError(f"child did not start a stack: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    _, session, run = line.split()
    assert docker.leftovers(run=run)["containers"], "the child's stack should be running"
    return proc, session, run


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["ctrl-c", "sigterm", "sigkill"])
def test_interrupted_run_removes_its_containers_and_network(auth_build, sig):
    proc, session, run = _start_child(str(auth_build.wasm))
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert _nothing_left(session), docker.leftovers(session=session)


def test_killed_run_is_swept_by_the_next_one(auth_build):
    proc, session, run = _start_child(str(auth_build.wasm))
    os.killpg(proc.pid, signal.SIGKILL)  # the child and its reaper: no finally, no sweep
    proc.wait(timeout=30)
    left = docker.leftovers(session=session)
    assert left["containers"] and left["networks"]  # proves the sweep below has work to do
    removed = docker.sweep(stale=True)
    assert set(left["containers"]) <= set(removed)
    assert docker.leftovers(session=session) == EMPTY


def test_stale_sweep_spares_live_runs(auth_build):
    proc, session, run = _start_child(str(auth_build.wasm))
    try:
        docker.sweep(stale=True)
        assert docker.leftovers(run=run)["containers"], "a live run's containers must survive a stale sweep"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    assert _nothing_left(session)


def test_this_session_leaves_nothing_after_its_stacks_stop(auth_build, docker_session):
    from wasmfilter.harness.stack import BackendOptions, StackSpec, start_stack
    from wasmfilter.manifest import load_manifest

    stack = start_stack(StackSpec(manifest=load_manifest(AUTH), wasm_path=auth_build.wasm), backend="docker",
                        options=BackendOptions(docker=docker_session))
    assert docker.leftovers(session=docker_session.id)["containers"]
    stack.stop()
    assert docker.leftovers(session=docker_session.id) == EMPTY
    docker_session.close()  # what the CLI and pytest_unconfigure call: a no-op now, and it stops the reaper
    assert docker.leftovers(session=docker_session.id) == EMPTY
    assert os.getpid() == int(docker_session.id.split("-")[0])


PYTEST_CHILD = textwrap.dedent("""
    import os, threading
    from wasmfilter.harness.docker import SESSION_LABEL

    def test_uses_docker(envoy_stack):
        stack = envoy_stack(os.environ["WF_FILTER"], backend="docker", wasm_path=os.environ["WF_WASM"])
        print("READY", stack.envoy.labels[SESSION_LABEL], flush=True)
        if os.environ["WF_MODE"] == "fail":
            assert False, "a failing test"
        threading.Event().wait()
""")


@pytest.mark.parametrize("mode", ["fail", "sigint", "sigterm"])
def test_pytest_session_leaves_nothing_when_a_test_fails_or_is_interrupted(auth_build, tmp_path, mode):
    (tmp_path / "test_child.py").write_text(PYTEST_CHILD)
    env = {**os.environ, "WF_FILTER": str(AUTH), "WF_WASM": str(auth_build.wasm), "WF_MODE": mode}
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "--rootdir",
                             str(tmp_path), str(tmp_path / "test_child.py")], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    session = ""
    for line in proc.stdout:
        if line.startswith("READY"):
            session = line.split()[1]
            break
    assert session, "the child test did not start its stack"
    if mode != "fail":
        proc.send_signal(signal.SIGINT if mode == "sigint" else signal.SIGTERM)
    rest = proc.stdout.read()
    code = proc.wait(timeout=120)
    assert code != 0, rest
    assert _nothing_left(session), rest
