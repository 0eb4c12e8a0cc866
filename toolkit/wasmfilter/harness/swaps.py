"""Traffic across filter swaps: a request loop on several kept-alive connections runs while an `EcdsStack` takes N
pushes (alternating modules and/or configs); every response is counted by status, every failed request as lost.
The `no traffic lost` test and the dev-loop benchmark use it."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from wasmfilter.envoy.xds.server import Push
from wasmfilter.harness.client import Client
from wasmfilter.harness.scenario import Request


@dataclass
class SwapReport:
    pushes: list[Push] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    lost: int = 0  # requests that got no HTTP response at all
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + self.lost

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


def with_custom_section(wasm: bytes, tag: str) -> bytes:
    """WASM with a custom section named TAG appended: the same code, a different module (new sha256, new VM) —
    how a benchmark or test makes "a new module" without a rebuild."""
    name = tag.encode()
    payload = _leb128(len(name)) + name
    return wasm + b"\x00" + _leb128(len(payload)) + payload


def _leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def swaps_under_load(url: str, swap: Callable[[int], Push], *, swaps: int = 20, connections: int = 4,
                     request: Request | None = None, max_requests: int = 200_000, timeout: float = 120.0
                     ) -> SwapReport:
    """Run SWAP(i) for i in range(SWAPS) while CONNECTIONS threads send REQUEST to URL back to back; the load starts
    before the first swap and stops after the last one was answered (bounded by MAX_REQUESTS and TIMEOUT)."""
    report = SwapReport()
    req = request or Request()
    stop = threading.Event()
    lock = threading.Lock()
    deadline = time.monotonic() + timeout
    sent = [0]

    def load() -> None:
        client = Client(url, timeout=10.0)
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                with lock:
                    if sent[0] >= max_requests:
                        return
                    sent[0] += 1
                try:
                    status = client.send(req).status
                except OSError as e:
                    client.close()
                    with lock:
                        report.lost += 1
                        report.errors.append(f"{type(e).__name__}: {e}")
                    continue
                with lock:
                    report.statuses[status] += 1
        finally:
            client.close()

    threads = [threading.Thread(target=load, name=f"swap-load-{i}", daemon=True) for i in range(connections)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    try:
        while sum(report.statuses.values()) < connections and time.monotonic() < deadline:
            time.sleep(0.001)  # every connection is up and answered before the first swap
        for i in range(swaps):
            report.pushes.append(swap(i))
        after = sum(report.statuses.values()) + connections
        while sum(report.statuses.values()) < after and time.monotonic() < deadline:
            time.sleep(0.001)  # some traffic after the last swap too
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
    report.seconds = time.perf_counter() - start
    return report
