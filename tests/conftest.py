"""Shared fixtures: where the corpus is, an isolated signing secret and IPython dir for every test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("NBMIGRATE_CORPUS", REPO.parent / "shared" / "corpus"))
NOTEBOOKS = REPO / "tests" / "notebooks"


@pytest.fixture(autouse=True)
def _isolated_secret(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the developer's real secret or IPython profile; kernels inherit these variables."""
    home = tmp_path_factory.mktemp("nbmigrate-home")
    monkeypatch.setenv("NBMIGRATE_SECRET_FILE", str(home / "secret"))
    monkeypatch.setenv("IPYTHONDIR", str(home / "ipython"))


def corpus_notebooks(kind: str) -> list[Path]:
    folder = CORPUS / kind
    return sorted(folder.glob("*.ipynb")) if folder.is_dir() else []


needs_corpus = pytest.mark.skipif(
    not (CORPUS / "correctness").is_dir(),
    reason=f"the shared notebook corpus is not at {CORPUS} (set NBMIGRATE_CORPUS to run these tests)",
)
