"""Shared queues with cpp-host's rules: `register` by (vm_id, name) gives a token (from 1; registering again returns
the same token and moves the notification to the new context), `resolve` finds a queue of any vm_id (NotFound
otherwise), `dequeue` of an empty queue is Empty, of an unknown token NotFound; `enqueue` notifies the registering
context with `proxy_on_queue_ready` once the current callback has returned (Envoy posts it to that VM's thread)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from wasmfilter.emulator.codes import Result

if TYPE_CHECKING:  # pragma: no cover
    from wasmfilter.emulator.host import FilterHost


@dataclass
class Queue:
    vm_id: str
    name: str
    context_id: int
    worker: int
    items: deque[bytes] = field(default_factory=deque)


class SharedQueues:
    def __init__(self) -> None:
        self.by_token: dict[int, Queue] = {}
        self._tokens: dict[tuple[str, str], int] = {}

    def register(self, vm_id: str, name: str, context_id: int, worker: int) -> int:
        token = self._tokens.get((vm_id, name))
        if token is None:
            token = len(self._tokens) + 1
            self._tokens[(vm_id, name)] = token
            self.by_token[token] = Queue(vm_id, name, context_id, worker)
        else:
            self.by_token[token].context_id = context_id
            self.by_token[token].worker = worker
        return token

    def resolve(self, vm_id: str, name: str) -> int | None:
        return self._tokens.get((vm_id, name))


def functions(host: FilterHost) -> dict[str, Callable[..., int]]:
    mem = host.memory
    queues = host.queues

    def text(ptr: int, size: int) -> str:
        return mem().read(ptr, size).decode("utf-8", "replace")

    def register_shared_queue(name_ptr: int, name_size: int, token_ptr: int) -> int:
        ctx = host.context()
        token = queues.register(host.plugin.vm_id, text(name_ptr, name_size), ctx.root_context_id,
                                ctx.worker.index)
        mem().write_u32(token_ptr, token)
        return Result.OK

    def resolve_shared_queue(vm_id_ptr: int, vm_id_size: int, name_ptr: int, name_size: int, token_ptr: int) -> int:
        token = queues.resolve(text(vm_id_ptr, vm_id_size), text(name_ptr, name_size))
        if token is None:
            return Result.NOT_FOUND
        mem().write_u32(token_ptr, token)
        return Result.OK

    def dequeue_shared_queue(token: int, data_ptr_ptr: int, data_size_ptr: int) -> int:
        queue = queues.by_token.get(token)
        if queue is None:
            return Result.NOT_FOUND
        if not queue.items:
            return Result.EMPTY
        mem().give(queue.items.popleft(), data_ptr_ptr, data_size_ptr)
        return Result.OK

    def enqueue_shared_queue(token: int, data_ptr: int, data_size: int) -> int:
        queue = queues.by_token.get(token)
        if queue is None:
            return Result.NOT_FOUND
        queue.items.append(mem().read(data_ptr, data_size))
        host.post(lambda: host.queue_ready(queue, token))
        return Result.OK

    return {"proxy_register_shared_queue": register_shared_queue, "proxy_resolve_shared_queue": resolve_shared_queue,
            "proxy_dequeue_shared_queue": dequeue_shared_queue, "proxy_enqueue_shared_queue": enqueue_shared_queue}
