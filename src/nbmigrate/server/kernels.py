"""Running nbmigrate operations in the kernels a Jupyter server manages, from inside the server.

One path for every caller on the server side -- the REST handlers, hibernation, resume and drain --
so that they all wait for a busy kernel the same way, notice a kernel that died or was restarted the
same way, and never block the server's event loop (everything here is awaited on it).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import TYPE_CHECKING, Any, cast

from jupyter_core.utils import ensure_async

from nbmigrate.errors import NbmigrateError

from .client import run_operation

if TYPE_CHECKING:
    from jupyter_client.asynchronous.client import AsyncKernelClient


class UnknownKernel(NbmigrateError):
    """The server has no kernel with that id (never started, shut down, or culled)."""


class KernelNotAnswering(NbmigrateError):
    """The kernel did not answer a kernel_info request in time (stuck, or still starting)."""


_LOCKS: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()
"""One operation at a time per kernel. Clients made by ``kernel.client()`` share the kernel manager's
session, hence its ZMQ identity: the kernel's ROUTER socket would send the replies of two concurrent
clients to one of them, and the other would wait forever for its kernel_info reply."""


def checkpoint_name(kernel_id: str) -> str:
    """A new checkpoint name for ``kernel_id``: ``<kernel id>-<UTC time to the millisecond>``."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"
    return f"{kernel_id}-{stamp}"


async def run_kernel_operation(kernel_manager: Any, kernel_id: str, op: str, *, timeout: float,
                               **params: Any) -> dict[str, Any]:
    """Run ``op`` (:mod:`nbmigrate.ops`) in the server's kernel ``kernel_id`` and return its result.

    Raises :class:`UnknownKernel`, :class:`KernelNotAnswering`, TimeoutError after ``timeout``
    seconds, or the kernel's own nbmigrate error (see :func:`~.client.run_operation`).
    """
    if kernel_id not in kernel_manager:
        raise UnknownKernel(f"no kernel {kernel_id} on this server")
    kernel = kernel_manager.get_kernel(kernel_id)
    lock = _LOCKS.setdefault(kernel, asyncio.Lock())
    async with lock:
        return await _run_alone(kernel, kernel_id, op, timeout, params)


async def _run_alone(kernel: Any, kernel_id: str, op: str, timeout: float, params: dict[str, Any]) -> dict[str, Any]:
    client = cast("AsyncKernelClient", kernel.client())
    client.start_channels()
    try:
        try:
            # Also waits for a busy kernel to finish its cell, and makes sure our iopub subscription is
            # live before the request goes out (output published before it would be lost).
            await client.wait_for_ready(timeout=timeout)
        except RuntimeError as exc:
            raise KernelNotAnswering(f"kernel {kernel_id} does not answer: {exc}") from None
        incarnation = kernel_incarnation(kernel)

        async def alive() -> bool:
            # The server restarts a kernel that died, in a new process that never got the request.
            return kernel_incarnation(kernel) == incarnation and bool(await ensure_async(kernel.is_alive()))

        return await run_operation(client, op, timeout=timeout, alive=alive, **params)
    finally:
        client.stop_channels()


def kernel_incarnation(kernel: Any) -> object:
    """What changes when the server restarts a kernel: the process id its provisioner launched
    (jupyter_client keeps the provisioner object across restarts). None where a provisioner has none."""
    return getattr(getattr(kernel, "provisioner", None), "pid", None)


def kernel_memory(kernel: Any) -> int | None:
    """Resident memory of the kernel's process and its children, in bytes: what shutting it down frees.

    None for a kernel whose process this server cannot see (a remote provisioner, already gone).
    """
    import psutil

    pid = kernel_incarnation(kernel)
    if not isinstance(pid, int):
        return None
    try:
        root = psutil.Process(pid)
        total = 0
        for process in [root, *root.children(recursive=True)]:
            try:
                total += process.memory_info().rss
            except psutil.Error:  # a child that exited meanwhile
                continue
        return total
    except psutil.Error:
        return None
