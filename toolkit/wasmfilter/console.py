"""Terminal output: rich on a TTY, plain lines otherwise (CI logs)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console

# Not a terminal (CI logs, pipes): wide enough that tables do not wrap header values.
_WIDTH = None if sys.stdout.isatty() else 160
out = Console(highlight=False, width=_WIDTH)
err = Console(stderr=True, highlight=False, width=_WIDTH)


@contextmanager
def progress(title: str) -> Iterator[Callable[[str], None]]:
    """A spinner with the latest step on a TTY; one plain line per step otherwise."""
    if out.is_terminal:
        with out.status(title) as status:
            yield lambda step: status.update(f"{title} — {step}")
    else:
        print(title, flush=True)
        yield lambda step: print(f"  {step}", flush=True)

