"""The xDS server in a child process of its own (`python -m wasmfilter.envoy.xds.process FD HOST PORT`, in a session
of its own so a terminal's Ctrl-C reaches only its owner), driven over a socket pair: `XdsProcess` has the
server's API (start/stop, push, wait, apply, pushes) while grpcio and envoy-data-plane load only in the child.

Why a process: grpcio installs fork handlers and keeps threads; a process that runs a gRPC server and then forks
(Envoy is started with a `preexec_fn` so it dies with its parent) can crash the forked child before it execs
(`epoll_wait error: Bad file descriptor`, exit -6, seen here). Keeping gRPC out of the toolkit's process keeps every
later Envoy, registry and cargo start safe, in `dev`, in `agent` and in a pytest session alike. The child ends when
told to, or when the pipe closes (its parent died, however)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any, Self

from wasmfilter.envoy.xds.resources import WasmResource
from wasmfilter.envoy.xds.server import Push, wait_for
from wasmfilter.errors import XdsError
from wasmfilter.ports import bind_error

START_TIMEOUT = 60.0


def check_port(host: str, port: int) -> None:
    """A busy fixed PORT as the server's own error, before anything slow (a build, a pull) starts."""
    if (e := bind_error(host, port)) is not None:
        raise XdsError(f"the xDS server cannot listen on {host}:{port} ({e.strerror})",
                       fix="pick another port, or 0 for a free one, or stop what holds it") from e


class XdsProcess:
    """`with XdsProcess() as xds: xds.apply(resource)`; PORT 0 takes a free one, a busy port is one error."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port
        self.pushes: list[Push] = []
        self._by_version: dict[str, Push] = {}
        self._conn: Connection | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self._send_lock = threading.Lock()
        self._replies: list[tuple[Any, ...]] = []
        self._reply = threading.Condition()
        self._connected = False
        self._state = threading.Lock()  # _by_version and _early: the pipe thread and push() both touch them
        self._early: list[tuple[Any, ...]] = []

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> Self:
        ours, theirs = socket.socketpair()
        try:
            self._child = subprocess.Popen(
                [sys.executable, "-m", "wasmfilter.envoy.xds.process", str(theirs.fileno()), self.host,
                 str(self.port)], pass_fds=(theirs.fileno(),), start_new_session=True)
        except OSError as e:
            ours.close()
            raise XdsError(f"cannot start the xDS server process: {e}", fix="check the Python installation") from e
        finally:
            theirs.close()
        parent = Connection(ours.detach())
        self._conn = parent
        if not parent.poll(START_TIMEOUT):
            self.stop()
            raise XdsError(f"the xDS server process did not start within {START_TIMEOUT:g} s",
                           fix="check that grpcio and envoy-data-plane are installed (make setup)")
        try:
            first = parent.recv()
        except EOFError as e:
            self.stop()
            raise XdsError("the xDS server process exited during start-up", fix="see its output above") from e
        if first[0] == "error":
            self.stop()
            raise XdsError(first[1], fix=first[2])
        self.port = first[1]
        threading.Thread(target=self._listen, daemon=True, name="wasmfilter-xds-pipe").start()
        return self

    def stop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                with self._send_lock:
                    conn.send(("stop",))
            except OSError:
                pass
        if self._child is not None:
            try:
                self._child.wait(10)
            except subprocess.TimeoutExpired:
                self._child.kill()
                self._child.wait()
            self._child = None
        if conn is not None:
            conn.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def push(self, resource: WasmResource) -> Push:
        """Send RESOURCE as the current version of its name; the Push settles when Envoy answers."""
        if self._conn is None:
            raise XdsError("the xDS server is not running", fix="start it first (use `with XdsProcess()`)")
        started = time.perf_counter()
        with self._reply:
            try:
                with self._send_lock:
                    self._conn.send(("push", resource))
            except OSError as e:
                raise XdsError(f"the xDS server process is gone ({e})", fix="restart the command") from e
            while not self._replies:
                if not self._reply.wait(30) and not self._replies:
                    raise XdsError("the xDS server process stopped answering", fix="restart the command")
            reply = self._replies.pop(0)
        if reply[0] == "error":
            raise XdsError(reply[1], fix=reply[2])
        push = Push(resource.name, reply[1], resource.describe(), started=started)
        self.pushes.append(push)
        with self._state:
            self._by_version[push.version] = push
            early = [m for m in self._early if m[1] == push.version]
        for message in early:
            self._settle(message)
        return push

    def wait(self, push: Push, timeout: float = 30.0) -> Push:
        return wait_for(push, timeout, connected=lambda: self._connected)

    def apply(self, resource: WasmResource, timeout: float = 30.0) -> Push:
        return self.wait(self.push(resource), timeout)

    # the pipe: replies to `push` (version or error), and outcomes as Envoy answers

    def _listen(self) -> None:
        conn = self._conn
        while conn is not None:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return
            if message[0] == "settled":
                self._settle(message)
            elif message[0] == "connected":
                self._connected = True
            else:
                with self._reply:
                    self._replies.append(message)
                    self._reply.notify()

    def _settle(self, message: tuple[Any, ...]) -> None:
        _, version, state, detail, nonce, seconds = message
        with self._state:
            push = self._by_version.get(version)
            if push is None:  # the outcome overtook the reply to `push`: applied when the Push exists
                self._early.append(message)
                return
        push.nonce = nonce
        push.settle(state, detail, finished=push.started + seconds)


def _child_main(conn: Connection, host: str, port: int) -> None:
    """The child: run the gRPC server, apply pushes from the socket, report each outcome back; end on "stop" or when
    the socket closes (the owner is gone, however it ended)."""
    from wasmfilter.envoy.xds.server import XdsServer

    lock = threading.Lock()

    def send(message: tuple[Any, ...]) -> None:
        with lock:
            try:
                conn.send(message)
            except OSError:
                pass

    server = XdsServer(host, port)
    try:
        server.start()
    except XdsError as e:
        send(("error", e.problem, e.fix or ""))
        return
    send(("ready", server.port))

    def report(push: Push) -> None:
        push.done.wait()
        send(("settled", push.version, push.state, push.error_detail, push.nonce, push.seconds))

    def connected() -> None:
        server.wait_connected(timeout=None)
        send(("connected",))

    threading.Thread(target=connected, daemon=True).start()
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return  # the parent is gone
            if message[0] == "stop":
                return
            resource: WasmResource = message[1]
            try:
                push = server.push(resource.name, resource.encode(), resource.describe())
            except Exception as e:  # an encoding problem: one line back, the server keeps serving
                send(("error", f"cannot encode {resource.describe()}: {e}", "report this as a wasmfilter bug"))
                continue
            send(("pushed", push.version))
            threading.Thread(target=report, args=(push,), daemon=True).start()
    finally:
        server.stop()


if __name__ == "__main__":
    _child_main(Connection(int(sys.argv[1])), sys.argv[2], int(sys.argv[3]))
