"""Chained migration A -> B -> C: a restored session is still monitored and can move again.

Kernel B restores A's checkpoint, runs one more cell (which the restored monitor must record), and
checkpoints; kernel C restores B's checkpoint. The after_restore tail must print the same in A (after
the same extra cell) and in C.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nbmigrate.notebooks import code_cells, run_cells, split
from nbmigrate.remote import Kernel

from ..conftest import CORPUS, REPO

pytestmark = pytest.mark.kernel

EXTRA_CELL = "chain_marker = ['moved', 'twice']\nchain_marker.append(len(chain_marker))"


def _chain_notebooks() -> list[Path]:
    own = [REPO / "examples" / "demo.ipynb", REPO / "tests" / "notebooks" / "session_objects.ipynb"]
    names = ("unserializable", "functions_classes", "inplace_mutation")
    corpus = [CORPUS / "correctness" / f"{n}.ipynb" for n in names]
    return own + [p for p in corpus if p.exists()]


@pytest.mark.parametrize("notebook", _chain_notebooks(), ids=lambda p: p.stem)
def test_chained_migration(notebook: Path, tmp_path: Path) -> None:
    main, tail = split(code_cells(notebook))
    work = tmp_path / "work"
    work.mkdir()
    first, second = tmp_path / "ckpt-a", tmp_path / "ckpt-b"
    with Kernel.start(cwd=str(work)) as a:
        a.execute("%load_ext nbmigrate")
        run_cells(a, main)
        a.execute(f"%checkpoint {first}")
        with Kernel.start(cwd=str(work)) as b:
            b.execute(f"%load_ext nbmigrate\n%restore {first}")
            b.execute(EXTRA_CELL)
            status = b.execute("%nbmigrate status").stdout
            assert "chain_marker" in status
            b.execute(f"%checkpoint {second}")
        a.execute(EXTRA_CELL)
        with Kernel.start(cwd=str(work)) as c:
            c.execute(f"%load_ext nbmigrate\n%restore {second}")
            expected = "".join(r.text for r in run_cells(a, tail)) + a.execute("print(chain_marker)").stdout
            got = "".join(r.text for r in run_cells(c, tail)) + c.execute("print(chain_marker)").stdout
    assert got == expected
