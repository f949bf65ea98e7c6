"""The Jupyter server extension: nbmigrate's operations over the server's own authenticated REST API.

Enabled by installing nbmigrate (``etc/jupyter/jupyter_server_config.d/nbmigrate.json``), or by hand::

    jupyter server extension enable nbmigrate.server        # (re-)enable; `disable` turns it off
    jupyter server --ServerApp.jpserver_extensions=nbmigrate.server=True     # for one run

(jupyter_server 2.21's ``enable`` refuses an extension that no config file in the target directory
lists yet, with "could not be found"; the shipped config file is such a listing. Without it, add
``{"ServerApp": {"jpserver_extensions": {"nbmigrate.server": true}}}`` to ``jupyter_server_config.json``.)

Configured like every Jupyter option, in ``jupyter_server_config.py``::

    c.NbmigrateExtension.store_url = "s3://bucket/checkpoints"     # where checkpoints go by default
    c.NbmigrateExtension.storage_options = {"anon": False}         # handed to fsspec

or on the command line: ``jupyter lab --NbmigrateExtension.store_url=/data/checkpoints``.

Elastic sessions (docs/elastic.md): ``hibernate_after`` checkpoints and shuts down idle kernels
(:mod:`.hibernation`), ``resume`` restores them when their notebook is opened again, on any server
sharing the store (:mod:`.resume`), and ``drain_deadline`` checkpoints every kernel on SIGTERM/SIGINT
(:mod:`.drain`)::

    c.NbmigrateExtension.hibernate_after = 3600
    c.NbmigrateExtension.drain_deadline = 25

The endpoints are described in :mod:`nbmigrate.server.handlers`. They use the server's token and
XSRF rules unchanged; every kernel operation runs inside the kernel the server already manages, so
the store URL must be one the kernel can write (the server's own file system for local kernels).
"""

from __future__ import annotations

import os
from typing import Any

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from tornado.ioloop import PeriodicCallback
from traitlets import Bool, Dict, Enum, Float, Int, Unicode, default

from nbmigrate import __version__

from .hibernation import Elastic


class NbmigrateExtension(ExtensionApp):
    """Checkpoint, restore and move kernel sessions through the Jupyter server's REST API."""

    name = "nbmigrate"
    version = __version__
    description = "Live-migrate kernel sessions: checkpoint, restore and move them over REST."
    load_other_extensions = True

    store_url = Unicode(
        help="Folder or fsspec URL (s3://bucket/prefix ...) holding the checkpoints this server makes "
        "when a request gives no URL, and the ones it receives. Default: <jupyter data dir>/nbmigrate/"
        "checkpoints. Kernels write there themselves, so they must be able to reach it.",
    ).tag(config=True)

    storage_options = Dict(
        help="Options for the store's fsspec backend (credentials, endpoint_url ...), used by the server "
        "and passed to kernels for checkpoints in the store.",
    ).tag(config=True)

    operation_timeout = Float(
        3600.0, help="Seconds a checkpoint, restore, plan or status request may take in the kernel "
        "(including waiting for a busy kernel to become free).",
    ).tag(config=True)

    max_archive_bytes = Int(
        1 << 40, help="Largest checkpoint archive accepted by PUT /api/nbmigrate/checkpoints/<name>/archive "
        "(it is streamed to the store, never held in memory).",
    ).tag(config=True)

    hibernate_after = Float(
        0.0, help="Seconds a kernel may stay idle (no execution, no client activity) before it is hibernated: "
        "checkpointed to the store, recorded under <store_url>/hibernated/, then shut down. 0: never.",
    ).tag(config=True)

    hibernate_check_interval = Float(
        30.0, help="Seconds between two looks for idle kernels (when hibernate_after > 0).",
    ).tag(config=True)

    hibernate_connected = Bool(
        True, help="Also hibernate idle kernels that a client (a browser tab) is connected to. Idle means no "
        "message either way, so an open but unused notebook counts as idle.",
    ).tag(config=True)

    hibernate_unmonitored = Bool(
        False, help="Hibernate idle kernels that never loaded nbmigrate too, with a best-effort checkpoint (every "
        "variable that can be stored is); such a kernel is shut down only if nothing had to be left out.",
    ).tag(config=True)

    resume = Enum(
        ["auto", "manual"], "auto", help="auto: when a notebook with a hibernated session is opened (a session is "
        "created for its path), restore the session into its new kernel before the first cell runs. manual: only "
        "tell the user; resume with POST /api/nbmigrate/hibernated/<path>/resume.",
    ).tag(config=True)

    drain_deadline = Float(
        25.0, help="Seconds the server spends checkpointing its kernels when it receives SIGTERM or SIGINT, before "
        "it stops (keep it below the platform's grace period, e.g. Kubernetes' 30 s). 0: no drain.",
    ).tag(config=True)

    drain_concurrency = Int(
        4, help="Kernels checkpointed at the same time during a drain (smallest first).",
    ).tag(config=True)

    elastic: Elastic
    create_session_plainly: Any
    """The session manager's own create_session: a session that resumes nothing (for the resume endpoint)."""
    _idle_check: PeriodicCallback | None = None

    @default("store_url")
    def _default_store_url(self) -> str:
        return os.path.join(jupyter_data_dir(), "nbmigrate", "checkpoints")

    def initialize_handlers(self) -> None:
        from .handlers import routes

        self.handlers.extend(routes())

    def initialize_settings(self) -> None:
        from .drain import install_signal_handlers
        from .resume import install_session_hook

        self.elastic = Elastic(self)
        self.create_session_plainly = install_session_hook(self.elastic)
        if float(self.drain_deadline) > 0:
            install_signal_handlers(self.elastic)
        if float(self.hibernate_after) > 0:
            self._idle_check = PeriodicCallback(self.elastic.tick, 1000 * float(self.hibernate_check_interval))
            self._idle_check.start()
            self.log.info("nbmigrate: kernels idle for %.0f s are hibernated to %s", float(self.hibernate_after),
                          self.store_url)

    async def stop_extension(self) -> None:
        if self._idle_check is not None:
            self._idle_check.stop()

    def checkpoint_url(self, name: str) -> str:
        """The URL of checkpoint ``name`` (already checked by :func:`~.handlers.check_name`) in the store."""
        return f"{str(self.store_url).rstrip('/')}/{name}"
