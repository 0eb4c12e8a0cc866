"""`python -m wasmfilter.harness.reaper SESSION`: removes a `DockerSession`'s containers and networks once the
program that owns it ends, however it ends. The owner holds the write end of this process's stdin; end of file
means the owner is gone (or closed the session). Interrupts sent to the terminal's process group are ignored, so
a Ctrl-C that stops the owner does not stop the reaper before its sweep."""

from __future__ import annotations

import signal
import sys


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if len(argv) != 1:
        sys.stderr.write("usage: python -m wasmfilter.harness.reaper SESSION_ID\n")
        return 2
    while sys.stdin.buffer.read(4096):
        pass
    from wasmfilter.harness.docker import sweep

    try:
        sweep(session=argv[0])
    except Exception as e:  # noqa: BLE001 - the engine may be gone too; say so, nothing more to do
        sys.stderr.write(f"wasmfilter reaper: could not sweep session {argv[0]}: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
