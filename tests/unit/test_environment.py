"""Unit tests for nbmigrate.environment: package versions, the restore-side check, process state."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from nbmigrate.environment import (
    apply_process_state,
    capture,
    check,
    distribution_version,
    imported_packages,
)
from nbmigrate.manifest import EnvironmentRecord


def _record(packages: dict[str, str] | None = None, sys_path: list[str] | None = None,
            env: dict[str, str] | None = None) -> EnvironmentRecord:
    return EnvironmentRecord(
        python=platform.python_version(), platform=platform.platform(), machine=platform.machine(),
        packages=dict(packages or {}), sys_path=list(sys_path or []), env=dict(env or {}), cwd=os.getcwd(),
    )


@pytest.fixture
def process_state() -> Iterator[None]:
    """Put sys.path and os.environ back as they were, whatever the test did."""
    saved_path = list(sys.path)
    saved_env = dict(os.environ)
    try:
        yield
    finally:
        sys.path[:] = saved_path
        os.environ.clear()
        os.environ.update(saved_env)


# --------------------------------------------------------------------------------------------------
# What this kernel has
# --------------------------------------------------------------------------------------------------


def test_imported_packages_has_numpy_with_its_version() -> None:
    packages = imported_packages()
    assert packages["numpy"] == f"numpy=={np.__version__}"


def test_imported_packages_skips_stdlib_and_private_modules() -> None:
    import json  # noqa: F401  (imported so it is in sys.modules)

    packages = imported_packages()
    assert "json" not in packages and "os" not in packages and "sys" not in packages
    assert not any(name.startswith("_") for name in packages)
    assert all("==" in spec for spec in packages.values())


def test_distribution_version() -> None:
    assert distribution_version("numpy") == ("numpy", np.__version__)
    assert distribution_version("json") is None  # standard library
    assert distribution_version("surely_not_a_module_xyz") is None


def test_capture_records_env_changes_and_sys_path(process_state: None) -> None:
    baseline = dict(os.environ)
    os.environ["NBMIGRATE_TEST_NEW"] = "1"
    rec = capture(baseline)
    assert rec.env == {"NBMIGRATE_TEST_NEW": "1"}
    assert rec.python == platform.python_version()
    assert rec.packages["numpy"] == f"numpy=={np.__version__}"
    assert rec.sys_path == [p for p in sys.path if isinstance(p, str)]
    assert rec.cwd == os.getcwd()


# --------------------------------------------------------------------------------------------------
# check()
# --------------------------------------------------------------------------------------------------


def test_check_accepts_what_is_installed() -> None:
    rec = _record({"numpy": f"numpy=={np.__version__}"})
    assert check(rec, {"numpy": ["arr"], "numpy.linalg": ["inv"]}) == []


def test_check_reports_a_missing_module_by_name_with_its_variables() -> None:
    rec = _record({"nbm_missing_pkg": "nbm-missing-pkg==1.2.3"})
    problems = check(rec, {"nbm_missing_pkg.sub": ["model", "encoder"], "numpy": ["arr"]})
    assert len(problems) == 1
    (p,) = problems
    assert p.module == "nbm_missing_pkg"
    assert p.variables == ["encoder", "model"]
    assert "install nbm-missing-pkg==1.2.3" in p.message
    text = str(p)
    assert text.startswith("nbm_missing_pkg: ")
    assert "(needed by encoder, model)" in text


def test_check_missing_local_module_hints_sys_path() -> None:
    problems = check(_record(), {"my_local_helpers": ["helper"]})
    assert [p.module for p in problems] == ["my_local_helpers"]
    assert "sys.path" in problems[0].message


def test_check_reports_a_major_version_mismatch() -> None:
    major = int(np.__version__.split(".")[0])
    other = f"numpy=={major + 1}.0.0"
    problems = check(_record({"numpy": other}), {"numpy": ["arr"]})
    assert len(problems) == 1
    p = problems[0]
    assert p.module == "numpy" and p.variables == ["arr"]
    assert other in p.message and f"numpy=={np.__version__}" in p.message
    assert "major version" in p.message


def test_check_tolerates_minor_version_differences() -> None:
    major = np.__version__.split(".")[0]
    assert check(_record({"numpy": f"numpy=={major}.0.0"}), {"numpy": ["arr"]}) == []
    # A module the checkpoint has no version for is only checked for presence.
    assert check(_record({}), {"numpy": ["arr"]}) == []


def test_check_ignores_the_standard_library() -> None:
    rec = _record({"json": "json==99.0"})  # even with a nonsense record
    assert check(rec, {"json": ["cfg"], "collections.abc": ["m"], "builtins": ["b"], "__main__": ["f"]}) == []


def test_check_problem_without_variables() -> None:
    (p,) = check(_record(), {"nbm_missing_pkg": []})
    assert p.variables == []
    assert "needed by" not in str(p)


# --------------------------------------------------------------------------------------------------
# apply_process_state
# --------------------------------------------------------------------------------------------------


def test_apply_process_state_restores_sys_path_entries(process_state: None, tmp_path: Path) -> None:
    a, b = str(tmp_path / "nb_a"), str(tmp_path / "nb_b")
    existing = sys.path[0]
    rec = _record(sys_path=[a, existing, b])
    apply_process_state(rec, dict(os.environ))
    # Missing entries go in front, in the recorded order; entries already there are not duplicated.
    assert sys.path[:2] == [a, b]
    assert sys.path.count(existing) == 1
    before = list(sys.path)
    apply_process_state(rec, dict(os.environ))  # idempotent
    assert sys.path == before


def test_apply_process_state_restores_env_vars(process_state: None) -> None:
    os.environ.pop("NBM_SESSION_VAR", None)
    os.environ["NBM_TARGET_ONLY"] = "target"
    baseline = dict(os.environ)
    rec = _record(env={"NBM_SESSION_VAR": "from-source", "NBM_TARGET_ONLY": "target"})
    apply_process_state(rec, baseline)
    assert os.environ["NBM_SESSION_VAR"] == "from-source"
    assert os.environ["NBM_TARGET_ONLY"] == "target"
