"""What a guest spends, counted deterministically: wasm instructions (wasmtime fuel, ~1 unit per instruction) per
exported callback, and host calls per imported function. Off by default; `FilterHost(..., meter=Meter())` turns it
on (the linker then wraps every import with a count). bench/guest_cost.py reads it per request."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Meter:
    fuel: Counter[str] = field(default_factory=Counter)    # export name → fuel consumed (the guest's own work)
    calls: Counter[str] = field(default_factory=Counter)   # import name → calls

    def callback(self, name: str, fuel: int) -> None:
        self.fuel[name] += fuel

    def host_call(self, name: str) -> None:
        self.calls[name] += 1

    def reset(self) -> None:
        self.fuel.clear()
        self.calls.clear()
