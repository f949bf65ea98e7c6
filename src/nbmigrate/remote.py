"""Driving a kernel from outside through jupyter_client: run cells, collect what they print.

Code goes to the kernel as the cell text; values travel as data (``user_expressions``/JSON output),
never spliced into code strings, so a path or name with quotes cannot change what runs.
"""

from __future__ import annotations

import ast
import json
import queue
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

from .errors import NbmigrateError


def _wait_for_ready(client: BlockingKernelClient, timeout: float, where: str) -> None:
    """Wait until the kernel answers ``kernel_info`` on shell and its iopub channel is connected.

    jupyter_client's own ``wait_for_ready`` gives up on the first missed heartbeat, and a kernel of a
    busy server on a loaded machine misses one now and then; here only silence for the whole
    ``timeout`` counts as a dead kernel.
    """
    deadline = time.monotonic() + timeout
    asked: set[str] = set()  # a reply to any of them will do: on a loaded machine each takes seconds
    while time.monotonic() < deadline:
        asked.add(client.kernel_info())
        try:
            reply = client.get_shell_msg(timeout=2)
        except queue.Empty:
            continue
        if reply["parent_header"].get("msg_id") not in asked or reply["msg_type"] != "kernel_info_reply":
            continue
        try:  # the kernel's status messages for that request reach iopub only once it is subscribed
            client.get_iopub_msg(timeout=0.2)
        except queue.Empty:
            continue
        return
    raise KernelError(f"the kernel of {where} did not answer within {timeout:.0f} s")


class KernelError(NbmigrateError):
    """A cell run through :class:`Kernel` raised (and the caller did not allow it)."""


@dataclass
class CellResult:
    """What one execute request produced."""

    stdout: str = ""
    stderr: str = ""
    result: str | None = None
    error: str | None = None
    traceback: list[str] = field(default_factory=list)
    user_expressions: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """stdout plus the execute_result's text/plain, as a notebook would show them."""
        return self.stdout + (self.result + "\n" if self.result is not None else "")


class Kernel:
    """A kernel started here (``Kernel.start``) or reached through a connection file (``Kernel.connect``)."""

    def __init__(self, client: BlockingKernelClient, manager: KernelManager | None = None) -> None:
        self.client = client
        self.manager = manager

    @classmethod
    def start(cls, *, cwd: str | None = None, env: dict[str, str] | None = None,
              kernel_name: str = "python3", startup_timeout: float = 60,
              extra_arguments: list[str] | None = None) -> Kernel:
        manager = KernelManager(kernel_name=kernel_name)
        kwargs: dict[str, Any] = {}
        if cwd is not None:
            kwargs["cwd"] = cwd
        if env is not None:
            kwargs["env"] = env
        if extra_arguments:
            kwargs["extra_arguments"] = extra_arguments
        manager.start_kernel(**kwargs)
        client = manager.blocking_client()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=startup_timeout)
        except RuntimeError:
            client.stop_channels()
            manager.shutdown_kernel(now=True)
            raise
        return cls(client, manager)

    @classmethod
    def connect(cls, connection_file: str, *, timeout: float = 30) -> Kernel:
        client = BlockingKernelClient(connection_file=connection_file)
        client.load_connection_file()
        client.start_channels()
        try:
            _wait_for_ready(client, timeout, connection_file)
        except BaseException:
            client.stop_channels()
            raise
        return cls(client)

    @property
    def pid(self) -> int | None:
        provisioner = getattr(self.manager, "provisioner", None)
        process = getattr(provisioner, "process", None)
        return getattr(process, "pid", None)

    def alive(self) -> bool:
        """Whether the kernel is running: its process (started here) or its heartbeat (connected)."""
        if self.manager is not None:
            return bool(self.manager.is_alive())
        return bool(self.client.is_alive())

    def _messages(self, msg_id: str, timeout: float, what: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(type, content) of the iopub messages answering ``msg_id``, until the kernel is idle again."""
        deadline = time.monotonic() + timeout
        dead_checks = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{what} did not finish within {timeout:.0f} s")
            try:
                msg = self.client.get_iopub_msg(timeout=min(remaining, 2))
            except queue.Empty:
                # A kernel that died (OOM-killed, crashed) never goes idle: notice it instead of waiting
                # out the timeout. A heartbeat can miss once under load, so it must stay silent a while.
                dead_checks = dead_checks + 1 if not self.alive() else 0
                if dead_checks >= 3:
                    raise KernelError(f"{what} did not finish: the kernel stopped (its process exited or "
                                      "its heartbeat stopped answering)") from None
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status" and content["execution_state"] == "idle":
                return
            yield kind, content

    def execute(self, code: str, *, timeout: float = 900, allow_error: bool = False,
                user_expressions: dict[str, str] | None = None) -> CellResult:
        """Run ``code`` as a cell, wait until the kernel is idle again, and return what it produced."""
        msg_id = self.client.execute(code, store_history=True, user_expressions=user_expressions or {})
        out = CellResult()
        for kind, content in self._messages(msg_id, timeout, f"cell {code[:80]!r}"):
            if kind == "stream":
                if content["name"] == "stdout":
                    out.stdout += content["text"]
                else:
                    out.stderr += content["text"]
            elif kind == "execute_result":
                out.result = content["data"].get("text/plain")
            elif kind == "error":
                out.error = f"{content['ename']}: {content['evalue']}"
                out.traceback = content.get("traceback", [])
        reply = self.client.get_shell_msg(timeout=30)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.client.get_shell_msg(timeout=30)
        out.user_expressions = reply["content"].get("user_expressions", {})
        if out.error is not None and not allow_error:
            printed = f"\n--- it printed ---\n{out.stdout[-4000:]}" if out.stdout else ""
            raise KernelError(f"cell failed: {out.error}{printed}\n--- cell ---\n{code[:2000]}")
        return out

    def evaluate_json(self, expression: str) -> Any:
        """Evaluate ``expression`` in the kernel and decode its value, which must be a JSON string."""
        result = self.execute("", user_expressions={"value": expression})
        value = result.user_expressions["value"]
        if value.get("status") != "ok":
            raise KernelError(f"{expression!r} failed: {value.get('ename')}: {value.get('evalue')}")
        return json.loads(ast.literal_eval(value["data"]["text/plain"]))

    def operation(self, op: str, *, on_progress: Callable[[str, int, int], None] | None = None,
                  timeout: float = 3600, **params: Any) -> dict[str, Any]:
        """Run an nbmigrate operation in the kernel (see :mod:`nbmigrate.ops`) and return its result."""
        from .ops import EventReader, request_code

        msg_id = self.client.execute(request_code(op, **params), silent=True, store_history=False)
        reader = EventReader(on_progress)
        error: str | None = None
        for kind, content in self._messages(msg_id, timeout, f"nbmigrate {op}"):
            if kind == "stream" and content["name"] == "stdout":
                reader.feed(content["text"])
            elif kind == "error":
                error = f"{content['ename']}: {content['evalue']}"
        result = reader.result
        if result is None:
            raise KernelError(f"nbmigrate {op} returned no result" + (f": {error}" if error else
                              " (is nbmigrate installed in the kernel's environment?)"))
        return result

    def shutdown(self) -> None:
        self.client.stop_channels()
        if self.manager is not None:
            self.manager.shutdown_kernel(now=False)

    def __enter__(self) -> Kernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
