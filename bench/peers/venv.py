"""The peers' own virtualenv: dill, Kishu and ElasticNotebook never enter the project's dependencies.

Made on first use (a few minutes, once) under ``~/.cache/nbmigrate-bench/peers-venv`` (or
``$NBMIGRATE_PEERS_VENV``) with the ordinary ``python -m venv`` + pip. torch goes in first from its
pinned CPU wheel, otherwise the peers' requirements pull a multi-GB CUDA build; then the libraries the
benchmark notebooks import, then the peers; last nbmigrate itself (editable, so the in-kernel probe
digests with the same code the project runs, and so nbmigrate's own row runs in the same kernels as
the peers: one source run serves several methods).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ..common import REPO, log

VENV = Path(os.environ.get("NBMIGRATE_PEERS_VENV", Path.home() / ".cache" / "nbmigrate-bench" / "peers-venv"))
STEPS = [
    ["torch==2.13.0"],
    ["numpy", "pandas", "scipy", "scikit-learn", "matplotlib", "ipykernel", "dill"],
    ["kishu", "elastic-kernel", "elastic-notebook-slim==0.0.12"],
    ["-e", str(REPO)],
]
"""pip installs in order (see the module docstring for why the order matters)."""
VERSIONS = ["torch", "numpy", "pandas", "scikit-learn", "ipykernel", "ipython", "dill", "kishu", "elastic-kernel",
            "elastic-notebook-slim", "nbmigrate"]
_STAMP = ".nbmigrate-bench-complete"


def python() -> Path:
    return VENV / "bin" / "python"


def _runs_this_checkout() -> bool:
    """Whether the venv's ``nbmigrate`` is this checkout's (another clone may have made the venv)."""
    done = subprocess.run([str(python()), "-c", "import nbmigrate; print(nbmigrate.__file__)"],
                          capture_output=True, text=True)
    return done.returncode == 0 and Path(done.stdout.strip()).resolve().is_relative_to((REPO / "src").resolve())


def ensure() -> Path | None:
    """The peer venv's python, made if missing; None (logged) if it cannot be made here.

    The venv is shared by every clone on the machine (it takes minutes to make); its editable nbmigrate
    is pointed at this checkout when it points elsewhere, so the kernels run the code being measured.
    """
    if (VENV / _STAMP).is_file():
        if not _runs_this_checkout():
            log(f"bench compare: pointing the peers' virtualenv's nbmigrate at {REPO}")
            try:
                subprocess.run([str(python()), "-m", "pip", "install", "--quiet", "--no-deps", *STEPS[-1]],
                               check=True)
            except (OSError, subprocess.CalledProcessError) as exc:
                log(f"bench compare: could not install {REPO} into {VENV} ({exc}); not comparing with the peers")
                return None
        return python()
    log(f"bench compare: making the peers' virtualenv at {VENV} (once; several minutes)...")
    try:
        if not python().is_file():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        for step in STEPS:
            log(f"  pip install {' '.join(step)}")
            subprocess.run([str(python()), "-m", "pip", "install", "--quiet", *step], check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        log(f"bench compare: could not make the peers' virtualenv at {VENV} ({exc}); "
            "comparing only the methods the project's own environment can run")
        return None
    (VENV / _STAMP).write_text("ok\n")
    return python()


def versions(interpreter: Path | str) -> dict[str, str | None]:
    """Installed versions of the packages that matter, as the kernels' interpreter sees them."""
    code = ("import json, sys\nfrom importlib.metadata import version, PackageNotFoundError\nout = {}\n"
            "for n in sys.argv[1:]:\n    try: out[n] = version(n)\n    except PackageNotFoundError: out[n] = None\n"
            "print(json.dumps(out))")
    done = subprocess.run([str(interpreter), "-c", code, *VERSIONS], capture_output=True, text=True, check=True)
    found: dict[str, str | None] = json.loads(done.stdout)
    return found
