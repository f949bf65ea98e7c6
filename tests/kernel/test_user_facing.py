"""What a user sees, on real kernels: help, status and plan views, report lines, the Python API, and
the errors of a checkpoint or restore that cannot be done faithfully (each one naming what it is about).

Every kernel inherits the isolated ``NBMIGRATE_SECRET_FILE`` and ``IPYTHONDIR`` of ``tests/conftest.py``.
Cells are numbered as in the history (``%load_ext`` and nbmigrate's own magics are not recorded).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nbmigrate.remote import CellResult, Kernel

pytestmark = pytest.mark.kernel

CHECKPOINT_LINE = re.compile(
    r"^(?P<variables>\d+) variables(?: \(\+\d+ modules re-imported\))?, (?P<groups>\d+) groups stored "
    r"\([\d.]+ [KMGT]?B\), (?P<cells>\d+) cells to replay \(est\. [\d.]+ s\), "
    r"written in [\d.]+ s to (?P<dest>\S+)",
    re.MULTILINE,
)


def start(cwd: Path, **env: str | None) -> Kernel:
    """A kernel in ``cwd`` with this process's environment, changed by ``env`` (None removes a variable)."""
    merged = dict(os.environ)
    for key, value in env.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return Kernel.start(cwd=str(cwd), env=merged)


def present(kernel: Kernel, *names: str) -> dict[str, bool]:
    """Which of ``names`` are bound in the kernel's user namespace."""
    found = kernel.evaluate_json(f"__import__('json').dumps([n in get_ipython().user_ns for n in {list(names)!r}])")
    return dict(zip(names, found, strict=True))


def no_traceback(result: CellResult) -> None:
    assert "Traceback" not in result.stderr + result.stdout + "".join(result.traceback)


def plan_lines(text: str) -> dict[str, tuple[str, str]]:
    """``%nbmigrate plan`` decision lines as ``{names: (store|recompute|LOST, reason)}``."""
    out: dict[str, tuple[str, str]] = {}
    for line in text.splitlines()[1:]:
        tag, _, rest = line.strip().partition(" ")
        names, _, why = rest.strip().partition(": ")
        if tag in ("store", "recompute", "LOST"):
            out[names] = (tag, why)
    return out


@pytest.fixture
def work(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


# 1 -------------------------------------------------------------------------------------------------

def test_magic_help_explains_the_options(work: Path) -> None:
    with start(work) as k:
        k.execute("%load_ext nbmigrate")
        k.execute("%checkpoint?")  # the pager's text goes to the front end as a payload: it must not fail
        checkpoint_help = k.execute("print(get_ipython().find_line_magic('checkpoint').__doc__)").stdout
        restore_help = k.execute("print(get_ipython().find_line_magic('restore').__doc__)").stdout
        nbmigrate_help = k.execute("print(get_ipython().find_line_magic('nbmigrate').__doc__)").stdout
    for option in ("destination", "--bandwidth", "100MB/s", "--prefer", "balanced,restore,checkpoint",
                   "--best-effort", "--verbose"):
        assert option in checkpoint_help, option
    for option in ("source", "--trust", "--partial", "--verbose"):
        assert option in restore_help, option
    assert "status" in nbmigrate_help and "plan" in nbmigrate_help


# 2 -------------------------------------------------------------------------------------------------

def test_status_and_plan_explain_store_or_recompute(work: Path) -> None:
    with start(work) as k:
        k.execute("%load_ext nbmigrate")
        k.execute("import time\nimport numpy as np")            # cell 0
        k.execute("time.sleep(0.5); s = 1")                     # cell 1: slow, tiny result
        k.execute("big = np.zeros(5_000_000)")                  # cell 2: cheap, 40 MB
        k.execute("gen = (i * i for i in range(10))")           # cell 3: cannot be pickled
        plan = k.execute("%nbmigrate plan").stdout
        status = k.execute("%nbmigrate status").stdout

    assert plan.startswith("plan (balanced, 274.0 MB/s)"), plan
    decisions = plan_lines(plan)
    assert decisions["s"][0] == "store", plan
    assert "replaying cell 1" in decisions["s"][1], plan
    assert decisions["big"][0] == "recompute", plan
    assert "cheaper" in decisions["big"][1] and "replaying cell 2" in decisions["big"][1], plan
    assert decisions["gen"][0] == "recompute", plan
    assert "cannot be stored" in decisions["gen"][1] and "generator" in decisions["gen"][1], plan
    assert "re-import np (numpy), time (time)" in plan

    assert status.startswith("4 cells recorded"), status
    rows = {line.split()[0]: line for line in status.splitlines()[2:]}
    assert "40.0 MB" in rows["big"] and "cell 2" in rows["big"], status
    assert "cell 1" in rows["s"], status
    assert "cell 3" in rows["gen"] and "opaque: generator" in rows["gen"], status


# 3 -------------------------------------------------------------------------------------------------

def test_checkpoint_report_line_and_bad_arguments(work: Path, tmp_path: Path) -> None:
    dest = tmp_path / "ckpt"
    with start(work) as k:
        k.execute("%load_ext nbmigrate")
        k.execute("import time\ntime.sleep(0.2); table = {'rows': list(range(100))}")
        k.execute("cheap = bytes(20_000_000)")  # big and quick to redo: replayed whatever the machine's load
        out = k.execute(f"%checkpoint {dest} --bandwidth 100MB/s --prefer restore").stdout
        report = k.evaluate_json("__import__('nbmigrate.extension').extension.last_report_json()")

        bad = k.execute(f"%checkpoint {tmp_path / 'bad'} --bandwidth xyz", allow_error=True)
        bad_prefer = k.execute(f"%checkpoint {tmp_path / 'bad'} --prefer fastest", allow_error=True)
        bad_plan = k.execute("%nbmigrate plan --bandwidth 0", allow_error=True)

    match = CHECKPOINT_LINE.match(out)
    assert match, out
    # time is a module binding: re-imported, not counted among the variables
    assert (match["variables"], match["groups"], match["cells"]) == ("2", "1", "1"), out
    assert match["dest"] == str(dest)
    assert "(+1 modules re-imported)" in out
    assert report["bandwidth"] == 100e6 and report["prefer"] == "restore"
    assert (dest / "manifest.json").is_file()

    # A usage error, shown as one line: not a traceback from inside the parser.
    assert "UsageError: --bandwidth: invalid bandwidth 'xyz'" in bad.stderr, bad
    assert "100MB/s" in bad.stderr
    no_traceback(bad)
    assert "UsageError" in bad_prefer.stderr and "fastest" in bad_prefer.stderr
    no_traceback(bad_prefer)
    assert "must be greater than zero" in bad_plan.stderr
    no_traceback(bad_plan)
    assert not (tmp_path / "bad").exists()


# 4 -------------------------------------------------------------------------------------------------

def test_python_api_checkpoint_and_restore_into_a_bare_kernel(work: Path, tmp_path: Path) -> None:
    dest = str(tmp_path / "ckpt")
    with start(work) as a:
        a.execute("%load_ext nbmigrate")
        a.execute("import time\ntime.sleep(0.2); model = {'w': [0.5, 1.5]}")
        a.execute("xs = [i * 2 for i in range(10)]")
        out = a.execute(
            "import nbmigrate\n"
            f"r = nbmigrate.checkpoint({dest!r}, bandwidth='1GB/s')\n"
            "print(type(r).__name__, r.variables, r.bandwidth, r.destination)"
        ).stdout
    assert out.split() == ["CheckpointReport", "2", "1000000000.0", dest]

    with start(work) as b:  # never ran %load_ext: restore loads the extension itself
        out = b.execute(
            "import nbmigrate\n"
            f"rep = nbmigrate.restore({dest!r})\n"
            "print(type(rep).__name__, rep.ok, sorted(rep.verified))\n"
            "print(model, xs[-1])"
        ).stdout
        assert out.splitlines() == ["RestoreReport True ['model', 'xs']", "{'w': [0.5, 1.5]} 18"], out
        # ... and the session is monitored from then on
        b.execute("later = xs + [1]")
        status = b.execute("%nbmigrate status").stdout
    assert re.search(r"^later\s", status, re.MULTILINE), status
    assert re.search(r"^model\s", status, re.MULTILINE), status


# 5 -------------------------------------------------------------------------------------------------

def test_variable_that_can_be_neither_stored_nor_replayed(work: Path, tmp_path: Path) -> None:
    dest = tmp_path / "ckpt"
    with start(work) as a:
        a.execute("%load_ext nbmigrate")
        a.execute("kept = [1, 2, 3]")
        a.execute("import numpy as np; g = (x for x in np.random.rand(3))")
        failed = a.execute(f"%checkpoint {dest}", allow_error=True)
        assert not (dest / "manifest.json").exists()
        best = a.execute(f"%checkpoint {dest} --best-effort").stdout

    assert failed.error is not None and failed.error.startswith("PlanError"), failed
    assert f"checkpoint to {dest} failed" in failed.error
    assert re.search(r"^\s+g: .*cannot pickle .*generator", failed.error, re.MULTILINE), failed.error
    assert "unseeded randomness" in failed.error and "--best-effort" in failed.error
    assert "kept" not in failed.error
    assert CHECKPOINT_LINE.match(best), best
    assert "NOT CARRIED (neither storable nor recomputable): g" in best

    with start(work) as b:
        b.execute("%load_ext nbmigrate")
        partial = b.execute(f"%restore {dest} --partial").stdout
        assert "MISSING: g" in partial, partial
        assert present(b, "kept", "np", "g") == {"kept": True, "np": True, "g": False}
        assert b.execute("print(kept)").stdout == "[1, 2, 3]\n"
        strict = b.execute(f"%restore {dest}", allow_error=True)
    assert "MISSING: g" in strict.stdout
    assert strict.error is not None and strict.error.startswith("RestoreError"), strict.error
    assert "incomplete" in strict.error


# 6 -------------------------------------------------------------------------------------------------

def test_checkpoint_signed_with_another_key(work: Path, tmp_path: Path) -> None:
    dest = tmp_path / "ckpt"
    with start(work, NBMIGRATE_SECRET="a") as a:
        a.execute("%load_ext nbmigrate")
        a.execute("x = [1, 2]")
        a.execute(f"%checkpoint {dest}")
    with start(work, NBMIGRATE_SECRET="b") as b:
        b.execute("%load_ext nbmigrate")
        refused = b.execute(f"%restore {dest}", allow_error=True)
        assert present(b, "x") == {"x": False}
        trusted = b.execute(f"%restore {dest} --trust\nprint(x)").stdout
    assert refused.error is not None and refused.error.startswith("IntegrityError"), refused
    assert "signed with another key" in refused.error
    assert "NBMIGRATE_SECRET" in refused.error and "--trust" in refused.error
    assert trusted.startswith("restored 1 variables"), trusted
    assert trusted.endswith("[1, 2]\n")


# 7 -------------------------------------------------------------------------------------------------

def test_package_missing_on_the_target(work: Path, tmp_path: Path) -> None:
    packages = tmp_path / "packages"
    (packages / "fakepkg_nbm").mkdir(parents=True)
    (packages / "fakepkg_nbm" / "__init__.py").write_text(
        "class Thing:\n    def __init__(self):\n        self.value = 42\n")
    dest = tmp_path / "ckpt"
    path = os.pathsep.join(p for p in (str(packages), os.environ.get("PYTHONPATH")) if p)
    with start(work, PYTHONPATH=path) as a:
        a.execute("%load_ext nbmigrate")
        a.execute("import time\nimport fakepkg_nbm\ntime.sleep(0.2); t = fakepkg_nbm.Thing()")
        a.execute("other = {'k': 1}")
        out = a.execute(f"%checkpoint {dest} -v").stdout
    assert re.search(r"^  stored +t: ", out, re.MULTILINE), out
    assert "re-imported: fakepkg_nbm, time" in out

    # B has no PYTHONPATH entry for the package: A's sys.path must not follow the checkpoint there.
    with start(work, PYTHONPATH=os.environ.get("PYTHONPATH")) as b:
        b.execute("%load_ext nbmigrate")
        failed = b.execute(f"%restore {dest}", allow_error=True)
        assert present(b, "t", "other", "fakepkg_nbm", "time") == dict.fromkeys(
            ("t", "other", "fakepkg_nbm", "time"), False), "the restore ran something before failing"
        partial = b.execute(f"%restore {dest} --partial").stdout
        assert present(b, "t", "other", "fakepkg_nbm", "time") == {
            "t": False, "other": True, "fakepkg_nbm": False, "time": True}
    assert failed.error is not None and failed.error.startswith("EnvironmentMismatchError"), failed
    assert "fakepkg_nbm: not installed here" in failed.error
    assert "(needed by fakepkg_nbm, t)" in failed.error and "--partial" in failed.error
    assert "MISSING: fakepkg_nbm, t" in partial, partial
    assert partial.count("fakepkg_nbm: not installed here") == 1, partial  # reported once, not per attempt
    assert "could not import" not in partial, partial


# 8 -------------------------------------------------------------------------------------------------

def test_replayed_cell_whose_input_file_changed(work: Path, tmp_path: Path) -> None:
    dest = tmp_path / "ckpt"
    data = work / "data.txt"
    with start(work) as a:
        a.execute("%load_ext nbmigrate")
        a.execute("with open('data.txt', 'w') as out:\n    out.write('a b c')")          # cell 0
        a.execute("rows = open('data.txt').read().split()\nfh = open('data.txt')")    # cell 1
        out = a.execute(f"%checkpoint {dest} -v").stdout
    assert re.search(r"^  recomputed fh: ", out, re.MULTILINE), out

    data.write_text("x y z")  # same size, other content
    with start(work) as b:
        b.execute("%load_ext nbmigrate")
        failed = b.execute(f"%restore {dest}", allow_error=True)
        assert present(b, "rows", "fh", "out") == {"rows": False, "fh": False, "out": False}
        assert data.read_text() == "x y z", "cell 0 was replayed over the changed file"
        data.write_text("a b c")
        restored = b.execute(f"%restore {dest}\nprint(rows, fh.read())").stdout
    assert failed.error is not None and failed.error.startswith("RestoreError"), failed
    assert f"cell 1 reads {data}, which differs" in failed.error, failed.error
    assert "--partial" in failed.error
    assert restored.endswith("['a', 'b', 'c'] a b c\n"), restored


# 9 -------------------------------------------------------------------------------------------------

def test_tampered_blob_is_refused_before_anything_is_unpickled(work: Path, tmp_path: Path) -> None:
    dest = tmp_path / "ckpt"
    with start(work) as a:
        a.execute("%load_ext nbmigrate")
        a.execute("import time")
        a.execute("time.sleep(0.2); weights = list(range(500))")
        a.execute("time.sleep(0.2); labels = ['x'] * 10")
        a.execute("cheap = bytes(20_000_000)")  # replayed
        # A slow store (10 MB/s: 2 s for `cheap`) keeps the plan clear of the machine's load, which can
        # make even this cell's measured time rival writing 20 MB to a fast local disk.
        out = a.execute(f"%checkpoint {dest} -v --bandwidth 10MB/s").stdout
    assert out.count("  stored ") == 2 and re.search(r"^  recomputed cheap: ", out, re.MULTILINE), out
    manifest = json.loads((dest / "manifest.json").read_text())["manifest"]
    blob_of = {name: g["blob"]["sha256"] for g in manifest["groups"] if g["stored"] for name in g["names"]}
    assert set(blob_of) == {"weights", "labels"} and blob_of["weights"] != blob_of["labels"]
    blob = dest / "blobs" / blob_of["weights"]
    raw = bytearray(blob.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    blob.write_bytes(bytes(raw))

    with start(work) as b:
        b.execute("%load_ext nbmigrate")
        failed = b.execute(f"%restore {dest}", allow_error=True)
        assert present(b, "weights", "labels", "cheap", "time") == dict.fromkeys(
            ("weights", "labels", "cheap", "time"), False), "something was loaded or replayed"
        partial = b.execute(f"%restore {dest} --partial").stdout
        # --partial: the corrupt group is recomputed instead when its cells can be replayed
        assert present(b, "weights", "labels", "cheap") == {"weights": True, "labels": True, "cheap": True}
    assert failed.error is not None and failed.error.startswith("IntegrityError"), failed
    assert f"blob {blob_of['weights'][:12]} is corrupt: checksum mismatch (holds weights)" in failed.error
    assert "labels" not in failed.error
    assert "(holds weights)" in partial and "recomputed instead" in partial, partial


# 10 ------------------------------------------------------------------------------------------------

def _cli() -> str:
    beside = Path(sys.executable).with_name("nbmigrate")
    found = str(beside) if beside.exists() else shutil.which("nbmigrate")
    assert found, "the nbmigrate console script is not installed"
    return found


def test_install_loads_the_extension_in_new_kernels(work: Path) -> None:
    profile = Path(os.environ["IPYTHONDIR"]) / "profile_default"
    for _ in range(2):  # installing twice leaves one block
        done = subprocess.run([_cli(), "install"], capture_output=True, text=True, check=True)
    assert f"enabled in {profile / 'ipython_kernel_config.py'}" in done.stdout
    assert (profile / "ipython_kernel_config.py").read_text().count(".extensions.append(\"nbmigrate\")") == 1
    with start(work) as k:
        k.execute("x = 1")
        status = k.execute("%nbmigrate status").stdout
    assert status.startswith("1 cells recorded"), status
    assert re.search(r"^x\s+28 B\s+cell 0", status, re.MULTILINE), status

    done = subprocess.run([_cli(), "uninstall"], capture_output=True, text=True, check=True)
    assert f"removed from {profile / 'ipython_kernel_config.py'}" in done.stdout
    with start(work) as k:
        missing = k.execute("%nbmigrate status", allow_error=True)
        loaded = k.evaluate_json("__import__('json').dumps('nbmigrate' in get_ipython().extension_manager.loaded)")
    assert "Line magic function `%nbmigrate` not found" in missing.stderr, missing
    assert loaded is False
    again = subprocess.run([_cli(), "uninstall"], capture_output=True, text=True, check=True)
    assert "not installed" in again.stdout
