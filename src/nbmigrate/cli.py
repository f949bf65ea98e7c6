"""The ``nbmigrate`` command line. Commands render report dataclasses; the work happens elsewhere.

A command parses its addresses (:mod:`nbmigrate.addresses`), reaches kernels through a
:class:`~nbmigrate.addresses.KernelHandle`, runs operations there (:mod:`nbmigrate.ops`) or moves
checkpoints (:mod:`nbmigrate.transfer`), and prints the report: text by default, JSON with ``--json``.
Progress bars (stderr, only on a terminal) follow the kernel's progress events.

Exit codes, for scripts: 0 done; 1 the operation failed (in the kernel or on the store; the message,
on stderr, names what failed); 2 usage errors: bad option, kernel address or store URL, or no kernel
answering at the address; 3 a restore or migration that finished incomplete (variables missing or
not matching their checkpoint).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from . import __version__
from .addresses import (
    AddressError,
    ConnectionFile,
    KernelAddress,
    RestKernel,
    StoreUrl,
    connect,
    parse_kernel_address,
    parse_store_url,
)
from .errors import IntegrityError, NbmigrateError
from .install import install as do_install
from .install import uninstall as do_uninstall
from .manifest import Manifest
from .reports import human_bytes

OK, FAILED, USAGE, INCOMPLETE = 0, 1, 2, 3
CONNECT_TIMEOUT = 10.0
PREFER_CHOICES = ("balanced", "restore", "checkpoint")


# --------------------------------------------------------------------------------------------------
# Errors and output


class CommandFailed(click.ClickException):
    """A failure with the CLI's exit code; with --json, also a JSON error object on stdout."""

    exit_code = FAILED

    def __init__(self, message: str, *, as_json: bool = False) -> None:
        super().__init__(message)
        self.as_json = as_json

    def show(self, file: IO[Any] | None = None) -> None:
        if self.as_json:
            click.echo(json.dumps({"ok": False, "exit_code": self.exit_code, "error": self.message}))
        click.echo(f"Error: {self.message}", err=True)


class UsageFailure(CommandFailed):
    """A bad kernel address or store URL, or nothing answering at the address."""

    exit_code = USAGE


@contextlib.contextmanager
def failures(what: str, *, as_json: bool) -> Iterator[None]:
    """Turn nbmigrate's exceptions into exit codes: address/URL problems 2, failed operations 1."""
    try:
        yield
    except AddressError as exc:
        raise UsageFailure(str(exc), as_json=as_json) from None
    except (NbmigrateError, TimeoutError) as exc:
        raise CommandFailed(f"{what} failed: {exc}", as_json=as_json) from None


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


class _AmountColumn(ProgressColumn):
    """Bytes for byte phases (``1.2/4.0 MB``), a count for cells (``3/7 cells``)."""

    def __init__(self) -> None:
        super().__init__()
        self._bytes = DownloadColumn()

    def render(self, task: Task) -> Text:
        if task.fields.get("unit") == "bytes":
            return self._bytes.render(task)
        total = "?" if task.total is None else f"{task.total:.0f}"
        return Text(f"{task.completed:.0f}/{total} {task.fields.get('unit', '')}", style="progress.download")


class ProgressBars:
    """``on_progress(phase, done, total)`` drawn as one rich bar per phase, on stderr if it is a terminal."""

    LABELS: ClassVar[dict[str, tuple[str, str]]] = {
        "write": ("writing checkpoint", "bytes"),
        "copy": ("copying checkpoint", "bytes"),
        "read": ("reading checkpoint", "bytes"),
        "replay": ("replaying cells", "cells"),
        "cells": ("running cells", "cells"),
    }

    def __init__(self, console: Console | None = None) -> None:
        console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description:<20}"), BarColumn(), _AmountColumn(), TransferSpeedColumn(),
            TimeElapsedColumn(), console=console, disable=not console.is_terminal,
        )
        self.tasks: dict[str, Any] = {}

    def __call__(self, phase: str, done: int, total: int) -> None:
        task = self.tasks.get(phase)
        if task is None:
            label, unit = self.LABELS.get(phase, (phase, ""))
            task = self.tasks[phase] = self.progress.add_task(label, total=total, unit=unit)
        self.progress.update(task, completed=done, total=total)

    def __enter__(self) -> ProgressBars:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


# --------------------------------------------------------------------------------------------------
# Parameters


def _bandwidth(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    from .costs import parse_bandwidth

    if value is None:
        return None
    try:
        return parse_bandwidth(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _kernel(text: str) -> KernelAddress:
    return parse_kernel_address(text)


def _store(text: str) -> StoreUrl:
    return parse_store_url(text)


json_option = click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
verbose_option = click.option("-v", "--verbose", is_flag=True, help="List every group, stored or recomputed, and why.")
bandwidth_option = click.option(
    "--bandwidth", metavar="B", callback=_bandwidth,
    help="Store bandwidth for the cost model, e.g. 100MB/s or 1Gbit/s (default: measured by a short write).")
prefer_option = click.option(
    "--prefer", type=click.Choice(PREFER_CHOICES), default="balanced", show_default=True,
    help="What the plan minimises: end-to-end time, restore time (store more) or checkpoint time (replay more).")
best_effort_option = click.option(
    "--best-effort", is_flag=True,
    help="Store what can be stored and name what cannot, instead of refusing; also checkpoints a kernel that "
         "never loaded nbmigrate (everything picklable is stored).")
trust_option = click.option(
    "--trust", is_flag=True,
    help="Accept a checkpoint not signed with your key (blob checksums are still verified).")
partial_option = click.option(
    "--partial", is_flag=True,
    help="Restore everything that can be restored when some of it cannot (exit code 3 names the rest).")


# --------------------------------------------------------------------------------------------------
# Commands


@click.group(epilog="Exit codes: 0 ok, 1 operation failed, 2 usage/address/URL error, 3 restore incomplete.")
@click.version_option(__version__, prog_name="nbmigrate")
def main() -> None:
    """Live-migrate Jupyter/IPython sessions: checkpoint, restore, migrate, inspect.

    KERNEL is a connection file (kernel-ID.json), a kernel id in Jupyter's runtime directory, or a Jupyter
    server URL (http://host:port/api/kernels/ID?token=...). STORE_URL is a folder or any fsspec URL
    (s3://bucket/prefix, file:///path ...); S3 endpoints and credentials come from the usual AWS variables.
    """


@main.command()
@click.argument("kernel", metavar="KERNEL")
@click.option("--to", "store", required=True, metavar="STORE_URL", help="Where to write the checkpoint.")
@bandwidth_option
@prefer_option
@best_effort_option
@json_option
@verbose_option
def checkpoint(kernel: str, store: str, bandwidth: float | None, prefer: str, best_effort: bool,
               as_json: bool, verbose: bool) -> None:
    """Checkpoint a running KERNEL to STORE_URL.

    \b
    Example:
      nbmigrate checkpoint kernel-1234.json --to s3://bucket/ckpt/run-1
    """
    from .transfer import checkpoint_report_from_dict

    with failures(f"checkpoint of {kernel}", as_json=as_json):
        address, url = _kernel(kernel), _store(store)
        with connect(address, timeout=CONNECT_TIMEOUT) as handle, ProgressBars() as bars:
            result = handle.operation("checkpoint", url=url.url, bandwidth=bandwidth, prefer=prefer,
                                      best_effort=best_effort, on_progress=bars)
    report = checkpoint_report_from_dict(result)
    if as_json:
        emit_json(result)
    else:
        click.echo(report.render(verbose=verbose))


@main.command()
@click.argument("store", metavar="STORE_URL")
@click.option("--into", "kernel", required=True, metavar="KERNEL",
              help="The kernel to restore into (it need not have loaded nbmigrate).")
@trust_option
@partial_option
@json_option
@verbose_option
def restore(store: str, kernel: str, trust: bool, partial: bool, as_json: bool, verbose: bool) -> None:
    """Restore STORE_URL into a running KERNEL, verifying every variable.

    \b
    Example:
      nbmigrate restore s3://bucket/ckpt/run-1 --into kernel-5678.json
    """
    from .transfer import restore_report_from_dict

    with failures(f"restore into {kernel}", as_json=as_json):
        url, address = _store(store), _kernel(kernel)
        with connect(address, timeout=CONNECT_TIMEOUT) as handle, ProgressBars() as bars:
            result = handle.operation("restore", url=url.url, trust=trust, partial=partial, on_progress=bars)
    report = restore_report_from_dict(result)
    if as_json:
        emit_json(result)
    else:
        click.echo(report.render(verbose=verbose))
    if not report.ok:
        click.echo("Error: restore incomplete: " + _incomplete(report.mismatched, report.missing,
                                                            len(report.failures), len(report.problems)), err=True)
        raise SystemExit(INCOMPLETE)


def _incomplete(mismatched: list[str], missing: list[str], failures: int, problems: int) -> str:
    parts = []
    if missing:
        parts.append("missing " + ", ".join(missing))
    if mismatched:
        parts.append("not matching their checkpoint: " + ", ".join(mismatched))
    if failures:
        parts.append(f"{failures} replayed cells failed")
    if problems:
        parts.append(f"{problems} problems")
    return "; ".join(parts) or "see the report"


def _same_kernel(a: KernelAddress, b: KernelAddress) -> bool:
    if isinstance(a, ConnectionFile) and isinstance(b, ConnectionFile):
        return a.path == b.path
    if isinstance(a, RestKernel) and isinstance(b, RestKernel):
        return a.kernel_id is not None and (a.server_url, a.kernel_id) == (b.server_url, b.kernel_id)
    return False


@main.command()
@click.argument("source", metavar="KERNEL")
@click.option("--to", "target", required=True, metavar="KERNEL", help="The kernel to move the session into.")
@click.option("--via", "via", metavar="STORE_URL",
              help="A store both kernels reach; without it the checkpoint is streamed through this machine.")
@click.option("--path", "notebook_path", metavar="NOTEBOOK",
              help="With --to a server URL: start the new kernel in the session of this notebook (a path "
                   "relative to the server's root), so it runs in the notebook's folder.")
@click.option("--shutdown-source", is_flag=True,
              help="Shut the source kernel down once the target verified every variable.")
@best_effort_option
@bandwidth_option
@prefer_option
@trust_option
@partial_option
@json_option
@verbose_option
def migrate(source: str, target: str, via: str | None, notebook_path: str | None, shutdown_source: bool,
            best_effort: bool, bandwidth: float | None, prefer: str, trust: bool, partial: bool, as_json: bool,
            verbose: bool) -> None:
    """Move the session of KERNEL into another kernel, verified.

    Checkpoints KERNEL, moves the checkpoint (through --via, or streamed through this machine in
    temporary folders that are removed afterwards; between two Jupyter servers, from the source
    server's checkpoint store into the target server's), restores it into the target and verifies every
    variable against its checkpoint digest. A kernel managed by a Jupyter server restarts when it is
    shut down behind the server's back: give such a source by its server URL to use --shutdown-source.

    \b
    Examples:
      nbmigrate migrate kernel-1234.json --to kernel-5678.json --shutdown-source
      nbmigrate migrate kernel-1234.json --to kernel-5678.json --via s3://bucket/moves/1
      nbmigrate migrate 'http://a:8888/api/kernels/ID?token=T' --to 'http://b:8888/?token=U' --path nb.ipynb
    """
    from .transfer import migrate as run_migration

    with failures(f"migration of {source} to {target}", as_json=as_json):
        src, dst = _kernel(source), _kernel(target)
        if _same_kernel(src, dst):
            raise AddressError(f"{source} and {target} are the same kernel")
        store = _store(via) if via is not None else None
        if store is not None and store.in_process_only:
            raise AddressError(f"{via}: memory:// lives inside one process, so two kernels cannot share it; "
                               "use a folder, an object store, or no --via")
        with contextlib.ExitStack() as stack:
            a = stack.enter_context(connect(src, timeout=CONNECT_TIMEOUT))
            b = stack.enter_context(connect(dst, timeout=CONNECT_TIMEOUT, path=notebook_path))
            bars = stack.enter_context(ProgressBars())
            report = run_migration(a, b, via=None if store is None else store.url, source_label=str(src),
                                   target_label=str(getattr(b, "url", None) or dst), bandwidth=bandwidth, prefer=prefer,
                                   best_effort=best_effort, trust=trust, partial=partial,
                                   shutdown_source=shutdown_source, progress=bars)
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(report.render(verbose=verbose))
    if not report.ok:
        r = report.restore
        click.echo("Error: migration incomplete: " + _incomplete(r.mismatched, r.missing, len(r.failures),
                                                              len(r.problems)), err=True)
        raise SystemExit(INCOMPLETE)


@main.command()
@click.argument("store", metavar="STORE_URL")
@trust_option
@click.option("--graph", "graph_path", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Also draw the history graph to FILE (.png, .svg, .pdf).")
@json_option
def inspect(store: str, trust: bool, graph_path: Path | None, as_json: bool) -> None:
    """Show what the checkpoint at STORE_URL holds, loading none of it.

    Verifies the manifest's signature (unless --trust) and that every blob is present, then lists the
    environment, the variables (stored or recomputed, and why), the cells a restore replays and the cells
    that are unsafe to replay.

    \b
    Example:
      nbmigrate inspect ./ckpt --graph history.svg
    """
    with failures(f"inspect {store}", as_json=as_json):
        url = _store(store)
        view = describe_checkpoint(url.url, trust=trust)
        if graph_path is not None:
            _draw(view.manifest, graph_path, title=url.url)
    if as_json:
        emit_json(view.to_dict())
    else:
        render_inspection(view, Console(width=None if Console().is_terminal else 160))
        if graph_path is not None:
            click.echo(f"history graph written to {graph_path}")
    if view.missing_blobs:
        click.echo(f"Error: {len(view.missing_blobs)} blobs are missing or have the wrong size: this checkpoint "
                   "cannot be restored", err=True)
        raise SystemExit(FAILED)


def _draw(manifest: Manifest, path: Path, *, title: str) -> None:
    from .graph import draw, layout

    try:
        draw(layout(manifest), path, title=title)
    except ImportError:
        raise AddressError("--graph needs matplotlib: pip install 'nbmigrate[graph]'") from None
    except ValueError as exc:
        raise AddressError(f"--graph: {exc}") from None
    except OSError as exc:
        raise NbmigrateError(f"cannot write {path}: {exc}") from None


@dataclass
class CheckpointView:
    """What ``nbmigrate inspect`` shows: the verified manifest, how it was verified, which blobs are absent."""

    url: str
    manifest: Manifest
    signature: str
    blob_bytes: int
    missing_blobs: list[str]

    def to_dict(self) -> dict[str, Any]:
        from .graph import first_line, variable_state

        m = self.manifest
        history = m.history["executions"]
        groups = {g.key: g for g in m.groups}
        env = m.environment
        return {
            "url": self.url,
            "signature": self.signature,
            "nbmigrate_version": m.nbmigrate_version,
            "format_version": m.format_version,
            "created": datetime.datetime.fromtimestamp(m.created).isoformat(timespec="seconds"),
            "blobs": {"count": len(m.blobs()), "bytes": self.blob_bytes, "missing": self.missing_blobs},
            "environment": {"python": env.python, "platform": env.platform, "machine": env.machine,
                            "cwd": env.cwd, "packages": env.packages, "sys_path_added": env.sys_path,
                            "env_vars_set": sorted(env.env)},
            "variables": [{"name": v.name, "type": v.type, "nbytes": v.nbytes,
                           "how": variable_state(groups[v.group].stored, groups[v.group].reason),
                           "group": v.group, "writer": v.writer} for v in m.variables],
            "modules": {b.name: b.module for b in m.modules},
            "groups": [{"key": g.key, "names": g.names, "stored": g.stored, "reason": g.reason,
                        "nbytes": 0 if g.blob is None else g.blob.size, "modules": g.modules} for g in m.groups],
            "replay": [{"index": i, "cell_id": history[i]["cell_id"], "duration": history[i]["duration"],
                        "first_line": first_line(history[i]["source"])} for i in m.plan.replay],
            "hazards": [{"index": ce["index"], "first_line": first_line(ce["source"]), "raised": ce["raised"],
                         "hazards": ce["hazards"]} for ce in history if ce["hazards"] or ce["raised"]],
            "plan": {"prefer": m.plan.prefer, "bandwidth": m.plan.bandwidth,
                     "est_checkpoint_seconds": m.plan.est_checkpoint_seconds,
                     "est_restore_seconds": m.plan.est_restore_seconds, "solver": m.plan.solver},
        }


def describe_checkpoint(url: str, *, trust: bool) -> CheckpointView:
    """Read and verify the manifest at ``url`` (no unpickling) and check its blobs are all there."""
    from .store import BLOB_DIR, CheckpointStore

    store = CheckpointStore(url)
    try:
        manifest = store.read_manifest()
        signature = "verified (signed with your key)"
    except IntegrityError as exc:
        if not trust:
            raise
        manifest = store.read_manifest(trust=True)
        signature = f"NOT verified (--trust): {str(exc).split('. ', 1)[0]}"
    folder = f"{store.root}/{BLOB_DIR}" if store.root else BLOB_DIR
    with contextlib.suppress(Exception):
        store.fs.invalidate_cache(folder)
    try:
        present = {str(e["name"]).rstrip("/").rsplit("/", 1)[-1]: int(e.get("size") or 0)
                   for e in store.fs.ls(folder, detail=True)}
    except FileNotFoundError:
        present = {}
    except Exception as exc:
        from .store import describe_store_error

        raise NbmigrateError(f"cannot list the blobs of {describe_store_error(exc, url)}") from exc
    blobs = manifest.blobs()
    missing = [b.sha256 for b in blobs if present.get(b.sha256) != b.size]
    return CheckpointView(url=url, manifest=manifest, signature=signature,
                          blob_bytes=sum(b.size for b in blobs), missing_blobs=missing)


def render_inspection(view: CheckpointView, console: Console) -> None:
    """Print a :class:`CheckpointView` as sections of text and tables."""
    data = view.to_dict()
    env = data["environment"]
    console.print(f"[bold]checkpoint[/bold] {view.url}", highlight=False)
    console.print(f"  written by nbmigrate {data['nbmigrate_version']} on {data['created']} "
                  f"(format {data['format_version']}); signature {data['signature']}", highlight=False)
    missing = f", [red]{len(view.missing_blobs)} MISSING[/red]" if view.missing_blobs else ", all present"
    console.print(f"  {data['blobs']['count']} blobs ({human_bytes(view.blob_bytes)}){missing}", highlight=False)

    console.print("[bold]environment[/bold]")
    console.print(f"  python {env['python']} on {env['platform']} ({env['machine']}), cwd {env['cwd']}",
                  highlight=False)
    # Values are "distribution==version" (keys are the imported module names, often the same).
    packages = ", ".join(sorted(set(env["packages"].values()), key=str.lower)) or "none recorded"
    console.print(f"  packages: {packages}", highlight=False)
    if env["sys_path_added"]:
        console.print("  sys.path added: " + ", ".join(env["sys_path_added"]), highlight=False)
    if env["env_vars_set"]:
        console.print("  environment variables set: " + ", ".join(env["env_vars_set"]), highlight=False)

    table = Table(title="variables", title_justify="left", box=None, pad_edge=False)
    for column in ("name", "type", "size", "how", "group", "written by"):
        table.add_column(column, justify="right" if column in ("size", "group") else "left")
    for v in data["variables"]:
        writer = "before monitoring" if v["writer"] < 0 else f"cell {v['writer']}"
        table.add_row(v["name"], v["type"], human_bytes(v["nbytes"]), v["how"], str(v["group"]), writer)
    console.print(table)
    if data["modules"]:
        console.print("re-imported: " + ", ".join(f"{n} ({m})" for n, m in sorted(data["modules"].items())),
                      highlight=False)

    table = Table(title="groups", title_justify="left", box=None, pad_edge=False)
    for column in ("group", "variables", "decision", "stored size", "why"):
        table.add_column(column, justify="right" if column in ("group", "stored size") else "left")
    for g in data["groups"]:
        decision = "stored" if g["stored"] else ("recomputed" if g["reason"].startswith("recomputed") else "LOST")
        why = g["reason"].split(": ", 1)[1] if g["reason"].startswith(("stored:", "recomputed:")) else g["reason"]
        table.add_row(str(g["key"]), ", ".join(g["names"]), decision,
                      human_bytes(g["nbytes"]) if g["stored"] else "", why)
    console.print(table)

    table = Table(title=f"cells to replay ({len(data['replay'])})", title_justify="left", box=None, pad_edge=False)
    for column in ("cell", "duration", "first line"):
        table.add_column(column, justify="right" if column != "first line" else "left")
    for c in data["replay"]:
        table.add_row(str(c["index"]), f"{c['duration']:.3f} s", c["first_line"])
    console.print(table)

    if data["hazards"]:
        table = Table(title="cells unsafe to replay", title_justify="left", box=None, pad_edge=False)
        for column in ("cell", "first line", "why"):
            table.add_column(column, justify="right" if column == "cell" else "left")
        for c in data["hazards"]:
            why = "; ".join((["raised"] if c["raised"] else []) + c["hazards"])
            table.add_row(str(c["index"]), c["first_line"], why)
        console.print(table)
    plan = data["plan"]
    console.print(f"plan: prefer {plan['prefer']}, bandwidth {human_bytes(plan['bandwidth'])}/s, est. checkpoint "
                  f"{plan['est_checkpoint_seconds']:.2f} s, restore {plan['est_restore_seconds']:.2f} s "
                  f"(solver {plan['solver']})", highlight=False)


@main.command()
@click.argument("notebook", type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="NOTEBOOK.ipynb")
@click.option("--checkpoint", "store", required=True, metavar="STORE_URL", help="Where to checkpoint the session.")
@click.option("--upto", metavar="CELL",
              help="Stop after this cell (inclusive): its 0-based position in the notebook, or its cell id.")
@click.option("--cwd", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Working directory of the kernel (default: the notebook's folder).")
@click.option("--kernel-name", default="python3", show_default=True, help="Kernel spec to start.")
@bandwidth_option
@prefer_option
@best_effort_option
@json_option
@verbose_option
def run(notebook: Path, store: str, upto: str | None, cwd: Path | None, kernel_name: str,
        bandwidth: float | None, prefer: str, best_effort: bool, as_json: bool, verbose: bool) -> None:
    """Run a notebook headless in a new kernel, then checkpoint it.

    The code cells of NOTEBOOK.ipynb run in order in a new kernel that monitors them; the session is
    then checkpointed to STORE_URL and the kernel stopped.

    Cells tagged raises-exception may fail; any other failing cell stops the run (exit code 1).

    \b
    Example:
      nbmigrate run analysis.ipynb --upto 12 --checkpoint ./ckpt
    """
    from .notebooks import code_cells, run_cells
    from .remote import Kernel
    from .transfer import checkpoint_report_from_dict

    with failures(f"run of {notebook.name}", as_json=as_json):
        url = _store(store)
        try:
            cells = code_cells(notebook)
        except Exception as exc:  # nbformat's NotJSONError, ValidationError ...
            raise AddressError(f"{notebook} is not a notebook nbformat can read: {exc}") from None
        if upto is not None:
            last = _cell_position(notebook, upto)
            cells = [c for c in cells if c.index <= last]
        t0 = time.perf_counter()
        with Kernel.start(cwd=str(cwd or notebook.resolve().parent), kernel_name=kernel_name) as kernel, \
                ProgressBars() as bars:
            kernel.execute("%load_ext nbmigrate")
            for done, cell in enumerate(cells):
                try:
                    run_cells(kernel, [cell])
                except NbmigrateError as exc:
                    raise NbmigrateError(f"cell {cell.index} raised: {exc}") from None
                bars("cells", done + 1, len(cells))
            run_seconds = time.perf_counter() - t0
            result = kernel.operation("checkpoint", url=url.url, bandwidth=bandwidth, prefer=prefer,
                                      best_effort=best_effort, on_progress=bars)
    report = checkpoint_report_from_dict(result)
    if as_json:
        emit_json({"notebook": str(notebook), "cells": [c.index for c in cells], "run_seconds": run_seconds,
                   "checkpoint": result})
    else:
        click.echo(f"ran {len(cells)} cells of {notebook.name} in {run_seconds:.1f} s")
        click.echo(report.render(verbose=verbose))


def _cell_position(notebook: Path, upto: str) -> int:
    """The notebook position of ``--upto``: a 0-based position among all cells, or a cell id."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]  # already read by code_cells
    if upto.isdigit():
        position = int(upto)
        if position >= len(cells):
            raise AddressError(f"--upto {upto}: {notebook.name} has {len(cells)} cells (0 to {len(cells) - 1})")
        return position
    for i, cell in enumerate(cells):
        if cell.get("id") == upto:
            return i
    raise AddressError(f"--upto {upto}: no cell with that id in {notebook.name} (give a cell id or a position)")


@main.command()
@click.option("--profile", default="default", show_default=True, help="IPython profile to configure")
def install(profile: str) -> None:
    """Load nbmigrate in every new IPython kernel (edits the profile's config files)."""
    for path in do_install(profile):
        click.echo(f"enabled in {path}")


@main.command()
@click.option("--profile", default="default", show_default=True, help="IPython profile to configure")
def uninstall(profile: str) -> None:
    """Stop loading nbmigrate in new kernels."""
    paths = do_uninstall(profile)
    if not paths:
        click.echo("nbmigrate was not installed in this profile")
    for path in paths:
        click.echo(f"removed from {path}")

