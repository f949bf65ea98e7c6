"""JupyterHub recipe: elastic notebook sessions with nbmigrate (explained in docs/hub.md).

Every user's single-user server runs nbmigrate's server extension with a store that all nodes share
(an ``s3://`` URL or a shared folder), under a prefix of its own per user. A kernel idle for
``HIBERNATE_AFTER`` seconds is checkpointed there and shut down; ``jupyterhub-idle-culler`` stops
the then idle server after ``CULL_TIMEOUT``; a server stopped for any reason (culler, admin, node
drain) checkpoints its remaining kernels on the way out (JupyterHub stops it with SIGINT, then
SIGTERM); when the user comes back, on whichever node, opening the notebook restores its session.

Only the hub's own choices live here: pick the authenticator and the spawner of your deployment as
usual (``c.JupyterHub.authenticator_class``, ``c.JupyterHub.spawner_class``) in this file or in a
file that ``load_subconfig``\\ s it. The values below come from environment variables so that one
file serves every environment (tests/hub/ runs it with a local hub and tiny timeouts).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sys
from typing import Any

c: Any = get_config()  # type: ignore[name-defined]  # noqa: F821  (JupyterHub's config loader provides it)

# Where hibernated sessions go: reachable, with the same URL, from every node a server can land on.
STORE = os.environ.get("NBMIGRATE_HUB_STORE", "/srv/nbmigrate-store")
# A kernel idle this long is checkpointed and shut down (0: never). Keep it well below CULL_TIMEOUT.
HIBERNATE_AFTER = float(os.environ.get("NBMIGRATE_HUB_HIBERNATE_AFTER", "1800"))
HIBERNATE_CHECK_INTERVAL = float(os.environ.get("NBMIGRATE_HUB_HIBERNATE_CHECK_INTERVAL", "60"))
# The idle culler stops a server idle this long (0: no culler service).
CULL_TIMEOUT = int(os.environ.get("NBMIGRATE_HUB_CULL_TIMEOUT", "3600"))
CULL_EVERY = int(os.environ.get("NBMIGRATE_HUB_CULL_EVERY", "300"))
# Seconds a stopping server has to checkpoint its live kernels. JupyterHub waits
# LocalProcessSpawner.interrupt_timeout after its SIGINT before it sends SIGTERM, then SIGKILL: give it more.
DRAIN_DEADLINE = float(os.environ.get("NBMIGRATE_HUB_DRAIN_DEADLINE", "60"))
# Hub-wide key from which each user's checkpoint-signing secret is derived (unset: every server
# keeps its own secret in the user's home, which is enough only when homes follow the user).
SECRET_KEY = os.environ.get("NBMIGRATE_HUB_SECRET_KEY", "")
# Variables the kernels need to reach the store (they write it themselves), passed on to servers.
STORE_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION",
             "AWS_ENDPOINT_URL", "GOOGLE_APPLICATION_CREDENTIALS")

EXTENSION_OPTIONS = [
    # Load the extension even where the environment's jupyter_server_config.d does not list it.
    "--ServerApp.jpserver_extensions=nbmigrate.server=True",
    f"--NbmigrateExtension.hibernate_after={HIBERNATE_AFTER}",
    f"--NbmigrateExtension.hibernate_check_interval={HIBERNATE_CHECK_INTERVAL}",
    "--NbmigrateExtension.resume=auto",
    f"--NbmigrateExtension.drain_deadline={DRAIN_DEADLINE}",
]


def user_store(spawner: Any) -> str:
    """The user's own prefix in the shared store: hibernation records are keyed by notebook path
    relative to the server's root, so two users' ``analysis.ipynb`` must not meet."""
    return f"{STORE.rstrip('/')}/{spawner.user.escaped_name}/"


def nbmigrate_options(spawner: Any) -> None:
    """pre_spawn_hook: the extension's options for this user's server.

    ``Spawner.args`` is not templated with ``{username}``, hence a hook; it keeps the arguments set
    elsewhere (``c.Spawner.args``) and replaces its own, since a user's spawner object is reused for
    every spawn.
    """
    own = ("--NbmigrateExtension.", "--ServerApp.jpserver_extensions=nbmigrate")
    kept = [arg for arg in spawner.args if not arg.startswith(own)]
    spawner.args = [*kept, *EXTENSION_OPTIONS, f"--NbmigrateExtension.store_url={user_store(spawner)}"]


def user_secret(spawner: Any) -> str:
    """Each user's signing secret, the same on every node and for every spawn, different per user
    (a user cannot sign a checkpoint that another user's kernel would trust)."""
    return hmac.new(SECRET_KEY.encode(), spawner.user.name.encode(), hashlib.sha256).hexdigest()


c.Spawner.pre_spawn_hook = nbmigrate_options
c.Spawner.environment = {name: os.environ[name] for name in STORE_ENV if name in os.environ}
if SECRET_KEY:
    c.Spawner.environment["NBMIGRATE_SECRET"] = user_secret
c.LocalProcessSpawner.interrupt_timeout = int(DRAIN_DEADLINE) + 15  # KubeSpawner: delete_grace_period

if CULL_TIMEOUT:
    c.JupyterHub.services = [{
        "name": "idle-culler",
        "command": [sys.executable, "-m", "jupyterhub_idle_culler",
                    f"--timeout={CULL_TIMEOUT}", f"--cull-every={CULL_EVERY}"],
    }]
    c.JupyterHub.load_roles = [{
        "name": "idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    }]
