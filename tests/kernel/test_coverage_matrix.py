"""Library coverage matrix (issue 5): every object kind in ``coverage_cases`` survives a migration.

Per family (one notebook-like session per library family, see ``coverage_cases.py``): kernel A runs
every creation cell, then every mutation cell, and checkpoints twice (``--prefer restore`` and
``--prefer checkpoint``); each checkpoint is restored in a fresh kernel. Per kind we record

* how it travelled (its co-variable group stored or recomputed, from the checkpoint report),
* whether the monitor saw the mutation (the mutating cell's CE lists the variable in ``writes``),
* whether it came back faithfully: same type, same content digest (``summary_json``), and the kind's
  check expression prints the same in A and in the restored kernel.

Checkpoints use ``--best-effort``: a kind that can be neither stored nor recomputed is then named in
the checkpoint report (and recorded as "not carried") instead of failing the whole family.

``test_family`` runs a family once (cached) and writes ``<basetemp>/coverage-matrix/<family>.json``;
``test_kind`` asserts one kind from those results, so a knowingly unfaithful kind is a strict xfail
with its reason and a fix shows up as XPASS. ``python -m tests.kernel.coverage_cases --write-docs``
turns the JSON into ``docs/supported.md``.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from nbmigrate.remote import Kernel

from .coverage_cases import FAMILIES, MARKER, MODES, RESULTS_DIRNAME, Case, Family, check_unique

pytestmark = pytest.mark.kernel

HISTORY = "__import__('json').dumps(__import__('nbmigrate.extension').extension.current_monitor().history.to_dict())"
REPORT = "__import__('nbmigrate.extension').extension.last_report_json()"
SUMMARY = "__import__('nbmigrate.extension').extension.summary_json()"
BANDWIDTH = "100MB/s"
"""Fixed, so the plan does not depend on how fast the test machine's disk is today."""


def _cell(tag: str, case: Case, body: str) -> str:
    return f"{MARKER}{tag} {case.kind}\n{body}"


def checks_code(cases: tuple[Case, ...]) -> str:
    """One cell printing ``{kind: repr(check)}`` as JSON; a check that raises prints its error instead."""
    lines = ["import json as _cov_json", "_cov = {}"]
    for c in cases:
        lines += [
            "try:",
            f"    _cov[{c.kind!r}] = repr({c.check})",
            "except Exception as _cov_e:",
            f"    _cov[{c.kind!r}] = 'ERROR ' + type(_cov_e).__name__ + ': ' + str(_cov_e)",
        ]
    lines.append("print(_cov_json.dumps(_cov))")
    return "\n".join(lines)


def _path_of(var: str, report: dict[str, Any]) -> str:
    if var in report.get("missing", []):
        return "not carried"
    for g in report["groups"]:
        if var in g["names"]:
            return "stored" if g["stored"] else "recomputed"
    if var in report.get("modules", []):
        return "module"
    return "not carried"


def _restore(work: Path, ckpt: Path, checks: str) -> dict[str, Any]:
    """Restore ``ckpt`` into a fresh kernel; its report, namespace summary and check output."""
    t = time.perf_counter()
    with Kernel.start(cwd=str(work)) as b:
        result = b.execute(f"%load_ext nbmigrate\n%restore {ckpt}", allow_error=True, timeout=300)
        report = b.evaluate_json(REPORT)
        summary = b.evaluate_json(SUMMARY)
        out = b.execute(checks, allow_error=True)
    return {"error": result.error, "printed": result.stdout, "report": report, "summary": summary,
            "checks": json.loads(out.stdout) if out.error is None else {}, "check_error": out.error,
            "seconds": time.perf_counter() - t}


def run_family(family: Family, root: Path) -> dict[str, Any]:
    """Kernel A: create, mutate, checkpoint per mode; kernels B (one per mode, in parallel): restore."""
    t0 = time.perf_counter()
    work = root / "work"
    work.mkdir(parents=True)
    for name, data in family.files.items():
        (work / name).write_bytes(data)
    checks = checks_code(family.cases)
    reports: dict[str, dict[str, Any]] = {}
    with Kernel.start(cwd=str(work)) as a:
        a.execute("%load_ext nbmigrate")
        a.execute(family.setup, timeout=300)
        for c in family.cases:
            a.execute(_cell("create", c, c.create))
        for c in family.cases:
            a.execute(_cell("mutate", c, c.mutate))
        history = a.evaluate_json(HISTORY)
        plans: dict[str, str] = {}
        for mode in MODES:
            plans[mode] = a.execute(
                f"%checkpoint {root / ('ckpt-' + mode)} --prefer {mode} --bandwidth {BANDWIDTH} --best-effort -v",
                timeout=300).stdout
            reports[mode] = a.evaluate_json(REPORT)
        summary_a = a.evaluate_json(SUMMARY)
        checks_a = json.loads(a.execute(checks).stdout)
        with ThreadPoolExecutor(len(MODES)) as pool:
            futures = {mode: pool.submit(_restore, work, root / ("ckpt-" + mode), checks) for mode in MODES}
            restored = {mode: f.result() for mode, f in futures.items()}

    kinds = []
    for c in family.cases:
        mutated = [ce for ce in history["executions"] if ce["source"].startswith(_cell("mutate", c, ""))]
        detected = bool(mutated) and c.var in mutated[-1]["writes"] and not mutated[-1]["raised"]
        modes = {mode: _judge(c, reports[mode], summary_a, checks_a, restored[mode]) for mode in MODES}
        kinds.append({"kind": c.kind, "var": c.var, "mutation": c.mutation, "note": c.note, "xfail": c.xfail,
                      "mutation_detected": detected, "check_a": checks_a.get(c.kind), "modes": modes})
    return {
        "family": family.name, "title": family.title, "seconds": time.perf_counter() - t0,
        "checkpoints": {m: {**{k: reports[m][k] for k in ("replay_cells", "stored_bytes", "missing", "seconds")},
                            "printed": plans[m]} for m in MODES},
        "history": [{"index": ce["index"], "cell": ce["source"].split("\n", 1)[0].removeprefix(MARKER),
                     "reads": ce["reads"], "writes": ce["writes"], "hazards": ce["hazards"]}
                    for ce in history["executions"]],
        "restores": {m: {"error": r["error"], "check_error": r["check_error"], "seconds": r["seconds"],
                         "ok": (r["report"] or {}).get("ok"), "problems": (r["report"] or {}).get("problems"),
                         "failures": (r["report"] or {}).get("failures"), "printed": r["printed"][-3000:]}
                     for m, r in restored.items()},
        "kinds": kinds,
    }


def _judge(c: Case, ckpt: dict[str, Any], summary_a: dict[str, Any], checks_a: dict[str, str],
           restored: dict[str, Any]) -> dict[str, Any]:
    problems: list[str] = []
    report = restored["report"] or {}
    va = summary_a["variables"].get(c.var)
    vb = (restored["summary"] or {"variables": {}})["variables"].get(c.var)
    if va is None:
        problems.append("not in the source kernel (harness error)")
    elif vb is None:
        problems.append("missing after restore")
    else:
        if va[0] != vb[0]:
            problems.append(f"type {va[0]} -> {vb[0]}")
        if va[1] != vb[1]:
            problems.append("digest differs" if va[1] is not None else "digest appeared after restore")
    for key in ("mismatched", "missing", "lossy"):
        if any(entry.split(" ")[0] == c.var for entry in report.get(key, [])):
            problems.append(f"restore report: {key}")
    for failure in report.get("failures", []):
        if c.var in failure["variables"]:
            problems.append(f"replay of cell {failure['cell']} failed: {failure['error']}")
    check_a, check_b = checks_a.get(c.kind), restored["checks"].get(c.kind)
    if check_a is None or check_a.startswith("ERROR"):
        problems.append(f"check failed in the source kernel (harness error): {check_a}")
    elif check_a != check_b:
        problems.append(f"check: {check_a} -> {check_b}")
    return {"path": _path_of(c.var, ckpt), "faithful": not problems, "problems": problems,
            "digest_verified": va is not None and va[1] is not None, "check_b": check_b}


class _Matrix:
    """Runs each family at most once per session and writes its JSON."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.results: dict[str, dict[str, Any]] = {}
        self.errors: dict[str, BaseException] = {}

    def family(self, family: Family) -> dict[str, Any]:
        if family.name in self.errors:
            raise RuntimeError(f"family {family.name} failed to run") from self.errors[family.name]
        if family.name not in self.results:
            try:
                result = run_family(family, self.root / family.name)
            except BaseException as exc:
                self.errors[family.name] = exc
                raise
            self.results[family.name] = result
            (self.root / f"{family.name}.json").write_text(json.dumps(result, indent=1))
        return self.results[family.name]


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> _Matrix:
    root = tmp_path_factory.getbasetemp() / RESULTS_DIRNAME
    root.mkdir(exist_ok=True)
    return _Matrix(root)


def test_cases_are_well_formed() -> None:
    check_unique()
    assert sum(len(f.cases) for f in FAMILIES) >= 80


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_family(family: Family, matrix: _Matrix) -> None:
    """The family's session runs, checkpoints in both modes and restores; every check ran in kernel A."""
    result = matrix.family(family)
    for mode, r in result["restores"].items():
        assert r["check_error"] is None, f"{mode}: the check cell failed in the restored kernel: {r['check_error']}"
    broken = [k["kind"] for k in result["kinds"] if k["check_a"] is None or k["check_a"].startswith("ERROR")]
    assert not broken, f"checks that fail in the source kernel (fix the case): {broken}"


def _kind_params() -> list[Any]:
    params = []
    for f in FAMILIES:
        for c in f.cases:
            marks = [pytest.mark.xfail(reason=c.xfail, strict=True)] if c.xfail else []
            params.append(pytest.param(f, c, id=f"{f.name}/{c.kind}", marks=marks))
    return params


@pytest.mark.parametrize(("family", "case"), _kind_params())
def test_kind(family: Family, case: Case, matrix: _Matrix) -> None:
    result = matrix.family(family)
    kind = next(k for k in result["kinds"] if k["kind"] == case.kind)
    assert kind["mutation_detected"], f"the monitor did not see `{case.var}` change in its mutation cell"
    bad = {mode: m["problems"] for mode, m in kind["modes"].items() if not m["faithful"]}
    assert not bad, f"`{case.var}` not restored faithfully: {bad}"
