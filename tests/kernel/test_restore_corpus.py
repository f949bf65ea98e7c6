"""Invariant 1 on real kernels: every correctness notebook migrates faithfully from kernel A to B.

Kernel A runs everything but the ``after_restore`` tail, ``%checkpoint``; a fresh kernel B (same
working directory) ``%restore``s; then every variable (type, digest, aliasing) and the tail's output
must be identical in both. The corpus lives outside the repository (CI has it beside the clone).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nbmigrate.notebooks import trial_migration

from ..conftest import NOTEBOOKS, REPO, corpus_notebooks, needs_corpus

pytestmark = pytest.mark.kernel

OWN_NOTEBOOKS = [REPO / "examples" / "demo.ipynb", *sorted(NOTEBOOKS.glob("*.ipynb"))]


@needs_corpus
@pytest.mark.corpus
@pytest.mark.parametrize("notebook", corpus_notebooks("correctness"), ids=lambda p: p.stem)
def test_corpus_notebook_migrates_faithfully(notebook: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    trial = trial_migration(notebook, str(work), str(tmp_path / "ckpt"))
    assert trial.restore["ok"], trial.restore
    assert trial.differences() == []


@pytest.mark.parametrize("notebook", OWN_NOTEBOOKS, ids=lambda p: p.stem)
def test_own_notebook_migrates_faithfully(notebook: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    trial = trial_migration(notebook, str(work), str(tmp_path / "ckpt"))
    assert trial.restore["ok"], trial.restore
    assert trial.differences() == []
