"""Kernels for the comparison: which Python they run, and how the harness talks to them without being seen.

The peers (dill, Kishu, ElasticNotebook) live in their own virtualenv (see :mod:`bench.peers.venv`), so
every kernel of a comparison runs that venv's Python: the source kernel must be able to run every
method's checkpoint, and a restore must run where its checkpoint was made. A kernelspec in a throw-away
``JUPYTER_PATH`` points at it. Without the peer venv (a clone that never ran the full benchmark, the
smoke test) the kernels run the project's own Python and only the methods that need nothing more run.

The harness's own requests (digests, timings) go as *silent* executes: IPython then fires no
``pre_run_cell``/``post_run_cell`` events and records no history, so Kishu and ElasticNotebook, which
watch cell executions, never see the harness.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from nbmigrate.remote import Kernel, KernelError

from ..common import QUIET

PROBE = Path(__file__).with_name("probe_kernel.py")
"""Runs inside kernels (via runpy) to digest the user namespace with nbmigrate's fingerprints."""


@contextlib.contextmanager
def kernelspecs(python: str, modules: Sequence[str]) -> Iterator[dict[str, str]]:
    """A kernelspec per kernel module (``python -m module -f ...``), visible through ``JUPYTER_PATH``.

    Yields ``{module: kernel name}``.
    """
    saved = os.environ.get("JUPYTER_PATH")
    names: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="nbm-kernelspec-") as tmp:
        for module in dict.fromkeys(modules):
            name = names[module] = "nbm-compare-" + module.replace(".", "-").replace("_", "-")
            spec = Path(tmp) / "kernels" / name
            spec.mkdir(parents=True)
            argv = [python, "-m", module, "-f", "{connection_file}"]
            (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": name, "language": "python"}))
        os.environ["JUPYTER_PATH"] = tmp + (os.pathsep + saved if saved else "")
        try:
            yield names
        finally:
            if saved is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = saved


def start(kernel_name: str, cwd: Path, env: dict[str, str] | None = None) -> Kernel:
    full = dict(os.environ, **(env or {}))
    return Kernel.start(cwd=str(cwd), env=full, kernel_name=kernel_name, extra_arguments=QUIET,
                        startup_timeout=120)


def silent_eval(kernel: Kernel, expression: str, timeout: float = 900, what: str | None = None) -> Any:
    """Evaluate ``expression`` (which returns a JSON string) without a history entry or cell events.

    ``what`` names the request in errors (default: the start of the expression).
    """
    client = kernel.client
    msg_id = client.execute("", silent=True, store_history=False, user_expressions={"value": expression})
    for _ in kernel._messages(msg_id, timeout, f"harness request {expression[:60]!r}"):
        pass
    reply = client.get_shell_msg(timeout=60)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = client.get_shell_msg(timeout=60)
    value = reply["content"].get("user_expressions", {}).get("value", {})
    if value.get("status") != "ok":
        raise KernelError(f"{what or repr(expression[:80])} failed in the kernel: "
                          f"{value.get('ename')}: {value.get('evalue')}")
    return json.loads(ast.literal_eval(value["data"]["text/plain"]))


def probe(kernel: Kernel, function: str, *args: Any, timeout: float = 900) -> Any:
    """Call ``function(*args)`` of probe_kernel.py inside the kernel (arguments travel as a JSON literal)."""
    arguments = f"*__import__('json').loads({json.dumps(args)!r})"
    call = f"__import__('runpy').run_path({str(PROBE)!r})[{function!r}]({arguments})"
    return silent_eval(kernel, call, timeout=timeout, what=function)


def project_python() -> str:
    return sys.executable


def silent_exec(kernel: Kernel, code: str, timeout: float = 900) -> None:
    """Run ``code`` without a history entry or cell events (raises KernelError if it raises)."""
    msg_id = kernel.client.execute(code, silent=True, store_history=False)
    error: str | None = None
    for kind, content in kernel._messages(msg_id, timeout, f"harness code {code[:60]!r}"):
        if kind == "error":
            error = f"{content['ename']}: {content['evalue']}"
    reply = kernel.client.get_shell_msg(timeout=60)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kernel.client.get_shell_msg(timeout=60)
    if error is None and reply["content"].get("status") == "error":
        error = f"{reply['content'].get('ename')}: {reply['content'].get('evalue')}"
    if error is not None:
        raise KernelError(f"{code[:200]!r} failed: {error}")
