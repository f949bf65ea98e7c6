"""The software environment a checkpoint needs, and whether this kernel provides it.

A checkpoint records the versions of the distributions behind every imported top-level module. A
restore checks, before anything is unpickled or replayed, that each module the stored groups and
module bindings need can be imported here, and that its distribution has the same major version
(pickles of a different major version of pandas or scikit-learn are not safe to load). Failures name
the package and the variables that depend on it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from .manifest import EnvironmentRecord

_STDLIB = frozenset(sys.stdlib_module_names) | {"builtins", "__main__"}


@lru_cache(maxsize=1)
def _providers() -> Mapping[str, list[importlib.metadata.Distribution]]:
    """Top-level module name -> the installed distributions that provide it.

    ``importlib.metadata.packages_distributions()`` answers the same question but parses every
    distribution's METADATA and makes a path object per RECORD line: about 2 s in a data-science
    environment, paid by the first checkpoint or restore in every fresh kernel. Here the import names
    come from ``top_level.txt`` when a distribution has one, else from the first part of each RECORD
    path, and metadata is read only for the modules asked about (a tenth of the time).
    """
    providers: dict[str, list[importlib.metadata.Distribution]] = {}
    for dist in importlib.metadata.distributions():
        declared = dist.read_text("top_level.txt")
        tops = set(declared.split()) if declared else _record_tops(dist.read_text("RECORD") or "")
        for top in tops:
            providers.setdefault(top, []).append(dist)
    return providers


def _record_tops(record: str) -> set[str]:
    """First components of a RECORD's paths: ``numpy/__init__.py`` -> numpy, ``six.py`` -> six."""
    tops = set()
    for line in record.splitlines():
        head, sep, _ = line.partition(",")[0].partition("/")
        tops.add(head if sep else head.partition(".")[0])
    return tops


def distribution_version(module: str) -> tuple[str, str] | None:
    """(distribution name, version) providing top-level ``module``, or None (stdlib, local file)."""
    for dist in _providers().get(module, []):
        metadata = dist.metadata  # parses METADATA on every access (``dist.version`` too): once here
        name = metadata["Name"]
        if name:
            return str(name), str(metadata["Version"])
    return None


def imported_packages() -> dict[str, str]:
    """``{top-level module: "dist==version"}`` for every imported third-party top-level module."""
    packages: dict[str, str] = {}
    for name in list(sys.modules):
        top = name.partition(".")[0]
        if top in packages or top in _STDLIB or top.startswith("_"):
            continue
        found = distribution_version(top)
        if found is not None:
            packages[top] = f"{found[0]}=={found[1]}"
    return packages


def capture(env_baseline: Mapping[str, str]) -> EnvironmentRecord:
    """Describe this kernel: interpreter, platform, packages, sys.path and the env vars the session set."""
    changed_env = {k: v for k, v in os.environ.items() if env_baseline.get(k) != v}
    return EnvironmentRecord(
        python=platform.python_version(),
        platform=platform.platform(),
        machine=platform.machine(),
        packages=imported_packages(),
        sys_path=[p for p in sys.path if isinstance(p, str)],
        env=changed_env,
        cwd=os.getcwd(),
    )


@dataclass
class EnvironmentProblem:
    module: str
    message: str
    variables: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        who = f" (needed by {', '.join(sorted(self.variables))})" if self.variables else ""
        return f"{self.module}: {self.message}{who}"


def _major(version: str) -> str:
    return version.split(".", 1)[0]


def check(
    record: EnvironmentRecord, needs: Mapping[str, Iterable[str]]
) -> list[EnvironmentProblem]:
    """Problems with the modules in ``needs`` (``{module: variables needing it}``) in this kernel."""
    problems: list[EnvironmentProblem] = []
    for module, variables in sorted(needs.items()):
        top = module.partition(".")[0]
        if top in _STDLIB:
            continue
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            wanted = record.packages.get(top)
            hint = f"install {wanted}" if wanted else "make it importable (is it a local module on sys.path?)"
            problems.append(EnvironmentProblem(top, f"not installed here; {hint}", sorted(variables)))
            continue
        wanted = record.packages.get(top)
        here = (_installed(wanted.partition("==")[0]) or distribution_version(top)) if wanted else None
        if wanted and here is not None:
            want_version = wanted.partition("==")[2]
            if _major(want_version) != _major(here[1]):
                problems.append(EnvironmentProblem(
                    top, f"checkpoint has {wanted}, this kernel has {here[0]}=={here[1]} (major version differs)",
                    sorted(variables)))
    return problems


def _installed(dist: str) -> tuple[str, str] | None:
    """(name, version) of distribution ``dist`` here: one lookup, no scan of every installed package."""
    try:
        return dist, importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def apply_process_state(record: EnvironmentRecord, baseline_env: Mapping[str, str]) -> None:
    """Re-create the process state cells changed that is not a variable: sys.path entries, env vars.

    ``sys.path.insert(0, "nb_tmp")`` then ``import helper_mod`` only works after a restore if the path
    entry comes back before the module is imported again.
    """
    missing = [p for p in record.sys_path if p not in sys.path]
    for p in reversed(missing):
        sys.path.insert(0, p)
    for key, value in record.env.items():
        if baseline_env.get(key) != value:
            os.environ[key] = value
