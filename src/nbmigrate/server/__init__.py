"""nbmigrate's Jupyter server extension: checkpoint, restore and move kernel sessions over REST.

``extension.py`` is the ExtensionApp and its configuration, ``handlers.py`` the REST endpoints,
``archive.py`` a checkpoint as a tar stream (both directions, checked), ``client.py`` the client
half (the async operation runner the handlers use, and the blocking REST client the CLI uses),
``kernels.py`` operations in the server's own kernels. Elastic sessions: ``hibernation.py`` (idle
kernels to the store), ``records.py`` (hibernation records, in the store), ``resume.py`` (back when
the notebook is opened), ``drain.py`` (every kernel on SIGTERM/SIGINT or on request).

Enable it with ``jupyter server extension enable nbmigrate.server``; installing nbmigrate enables it
through ``etc/jupyter/jupyter_server_config.d/nbmigrate.json``.
"""

from __future__ import annotations

from typing import Any

from nbmigrate import __version__ as __version__  # shown by `jupyter server extension list`


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """Jupyter server's entry point: the extension app (imported here, so that the REST client, which
    lives in this package too, does not load jupyter_server)."""
    from .extension import NbmigrateExtension

    return [{"module": "nbmigrate.server", "app": NbmigrateExtension}]
