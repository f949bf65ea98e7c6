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

The endpoints are described in :mod:`nbmigrate.server.handlers`. They use the server's token and
XSRF rules unchanged; every kernel operation runs inside the kernel the server already manages, so
the store URL must be one the kernel can write (the server's own file system for local kernels).
"""

from __future__ import annotations

import os

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from traitlets import Dict, Float, Int, Unicode, default

from nbmigrate import __version__


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

    @default("store_url")
    def _default_store_url(self) -> str:
        return os.path.join(jupyter_data_dir(), "nbmigrate", "checkpoints")

    def initialize_handlers(self) -> None:
        from .handlers import routes

        self.handlers.extend(routes())

    def checkpoint_url(self, name: str) -> str:
        """The URL of checkpoint ``name`` (already checked by :func:`~.handlers.check_name`) in the store."""
        return f"{str(self.store_url).rstrip('/')}/{name}"
