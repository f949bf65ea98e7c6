"""Runs INSIDE a benchmark kernel (loaded with runpy by :func:`bench.peers.kernels.probe`), never imported.

Everything here reaches the user namespace through ``get_ipython()`` and binds no name in it, so the
digests a comparison takes before and after a migration see only the user's variables. Functions
return JSON strings (the harness reads them as user expressions).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def _shell() -> Any:
    from IPython import get_ipython

    return get_ipython()


def _user_items() -> dict[str, Any]:
    from nbmigrate.namespace import user_items

    shell = _shell()
    return dict(user_items(shell.user_ns, shell.user_ns_hidden))


def summary() -> str:
    """``{name: [type, digest]}`` with nbmigrate's fingerprint digests (None where a value is opaque)."""
    from nbmigrate.fingerprint import FingerprintSession, fingerprint
    from nbmigrate.namespace import type_name

    values = _user_items()
    with FingerprintSession() as session:
        out = {n: [type_name(v), fingerprint(v, session=session).digest] for n, v in values.items()}
    return json.dumps(out)


def dump_session(path: str) -> str:
    """DumpSession: the whole ``__main__`` module (IPython's user namespace) in one dill file."""
    import dill

    dill.dump_module(path)
    return json.dumps(os.path.getsize(path))


def load_session(path: str) -> str:
    import dill

    dill.load_module(path)
    return json.dumps(None)


def pickle_each(folder: str) -> str:
    """PickleEach: every user variable in its own dill file; a variable dill cannot pickle is skipped."""
    import dill

    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    saved: list[str] = []
    skipped: dict[str, str] = {}
    for i, (name, value) in enumerate(_user_items().items()):
        path = target / f"{i:05d}.pkl"
        try:
            with path.open("wb") as f:
                dill.dump((name, value), f)
        except Exception as exc:  # the method's rule: skip what does not pickle
            path.unlink(missing_ok=True)
            skipped[name] = f"{type(exc).__name__}: {str(exc)[:160]}"
        else:
            saved.append(name)
    return json.dumps({"saved": saved, "skipped": skipped})


def unpickle_each(folder: str) -> str:
    import dill

    ns = _shell().user_ns
    failed: dict[str, str] = {}
    for path in sorted(Path(folder).glob("*.pkl")):
        try:
            with path.open("rb") as f:
                name, value = dill.load(f)
        except Exception as exc:  # reported as a failed variable, the others still load
            failed[path.name] = f"{type(exc).__name__}: {str(exc)[:160]}"
            continue
        ns[name] = value
    return json.dumps({"failed": failed})


def versions(names: list[str]) -> str:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return json.dumps(out)


def pickle_lossy() -> str:
    """Names whose digest changes on a plain pickle round trip in this very kernel.

    Some types' own pickling drops state the fingerprint sees (nbmigrate's restore reports such
    values as "lossy"); any method that pickles them shows a digest difference that says nothing
    about the method, so the comparison checks their type and the after_restore output instead.
    """
    import pickle

    from nbmigrate.fingerprint import FingerprintSession, fingerprint

    lossy: list[str] = []
    with FingerprintSession() as session:
        for name, value in _user_items().items():
            try:
                copy = pickle.loads(pickle.dumps(value, protocol=5))
            except Exception:  # not picklable by plain pickle: nothing to learn here
                continue
            before = fingerprint(value, session=session).digest
            if before is not None and fingerprint(copy, session=session).digest != before:
                lossy.append(name)
            del copy
    return json.dumps(lossy)
