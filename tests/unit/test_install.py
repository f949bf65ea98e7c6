"""Unit tests for nbmigrate.install: the marked block in the IPython profile's config files.

tests/conftest.py points IPYTHONDIR at a fresh temporary folder for every test, so the developer's
real profile is never touched.
"""

from __future__ import annotations

import os
from pathlib import Path

from nbmigrate.install import BEGIN, BLOCK, CONFIG_FILES, END, install, profile_dir, uninstall


def _folder() -> Path:
    return Path(os.environ["IPYTHONDIR"]) / "profile_default"


def test_profile_dir_follows_ipythondir() -> None:
    assert profile_dir() == _folder()
    assert profile_dir("work") == Path(os.environ["IPYTHONDIR"]) / "profile_work"


def test_install_writes_the_block_to_both_config_files() -> None:
    written = install()
    assert sorted(p.name for p in written) == sorted(CONFIG_FILES) == ["ipython_config.py", "ipython_kernel_config.py"]
    for name in CONFIG_FILES:
        text = (_folder() / name).read_text()
        assert text == BLOCK
        assert 'c.InteractiveShellApp.extensions.append("nbmigrate")' in text


def test_install_is_idempotent() -> None:
    install()
    install()
    for name in CONFIG_FILES:
        text = (_folder() / name).read_text()
        assert text.count(BEGIN) == 1 and text.count(END) == 1
        assert text.count("extensions.append") == 1


def test_install_keeps_other_content_and_uninstall_removes_only_the_block() -> None:
    folder = _folder()
    folder.mkdir(parents=True)
    user = "c = get_config()\nc.InteractiveShell.colors = 'Linux'"  # no trailing newline
    (folder / "ipython_config.py").write_text(user)
    install()
    install()
    text = (folder / "ipython_config.py").read_text()
    assert text.startswith(user + "\n")
    assert text.count(BEGIN) == 1
    assert (folder / "ipython_kernel_config.py").read_text() == BLOCK

    changed = uninstall()
    assert sorted(p.name for p in changed) == sorted(CONFIG_FILES)
    assert (folder / "ipython_config.py").read_text() == user + "\n"
    assert (folder / "ipython_kernel_config.py").read_text() == ""


def test_uninstall_keeps_content_after_the_block() -> None:
    folder = _folder()
    folder.mkdir(parents=True)
    before, after = "c.A.x = 1\n", "c.B.y = 2\n"
    (folder / "ipython_kernel_config.py").write_text(before + BLOCK + after)
    assert [p.name for p in uninstall()] == ["ipython_kernel_config.py"]
    assert (folder / "ipython_kernel_config.py").read_text() == before + after


def test_uninstall_without_install_changes_nothing() -> None:
    assert uninstall() == []  # no profile at all
    folder = _folder()
    folder.mkdir(parents=True)
    (folder / "ipython_config.py").write_text("c.A.x = 1\n")
    assert uninstall() == []
    assert (folder / "ipython_config.py").read_text() == "c.A.x = 1\n"


def test_install_in_a_named_profile() -> None:
    written = install("work")
    assert {p.parent.name for p in written} == {"profile_work"}
    assert not _folder().exists()
    assert len(uninstall("work")) == 2


def test_installed_config_loads_the_extension() -> None:
    """The block is valid config: IPython's loader reads it into InteractiveShellApp.extensions."""
    from traitlets.config.loader import PyFileConfigLoader

    install()
    for name in CONFIG_FILES:
        cfg = PyFileConfigLoader(name, path=str(_folder())).load_config()
        assert "nbmigrate" in list(cfg.InteractiveShellApp.extensions.get_value([]))


def test_a_block_without_its_end_marker_never_swallows_the_rest_of_the_file() -> None:
    """A user who deleted the END line by hand keeps everything after the BEGIN line."""
    folder = _folder()
    folder.mkdir(parents=True)
    broken = f"c.A.x = 1\n{BEGIN}\nc.InteractiveShellApp.extensions.append(\"nbmigrate\")\nc.B.y = 2\n"
    (folder / "ipython_config.py").write_text(broken)
    uninstall()
    assert (folder / "ipython_config.py").read_text() == broken
    install()
    install()
    text = (folder / "ipython_config.py").read_text()
    assert text == broken + BLOCK
    uninstall()
    assert (folder / "ipython_config.py").read_text() == broken
