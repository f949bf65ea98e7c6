"""``nbmigrate install`` / ``uninstall``: load the extension in every new IPython kernel and shell.

Adds a marked block to the default profile's ``ipython_config.py`` and ``ipython_kernel_config.py``
(the kernel reads both), the same place a user would add ``c.InteractiveShellApp.extensions`` by hand.
"""

from __future__ import annotations

from pathlib import Path

BEGIN = "# >>> nbmigrate >>> (added by `nbmigrate install`; remove with `nbmigrate uninstall`)"
END = "# <<< nbmigrate <<<"
BLOCK = f'{BEGIN}\nc.InteractiveShellApp.extensions.append("nbmigrate")\n{END}\n'
CONFIG_FILES = ("ipython_config.py", "ipython_kernel_config.py")


def profile_dir(profile: str = "default") -> Path:
    from IPython.paths import get_ipython_dir

    return Path(get_ipython_dir()) / f"profile_{profile}"


def _strip(text: str) -> str:
    """``text`` without its BEGIN...END blocks; a BEGIN whose END was deleted by hand is kept, with
    everything after it (the user's own settings must never go)."""
    out: list[str] = []
    block: list[str] | None = None
    for line in text.splitlines(keepends=True):
        if line.startswith(BEGIN):
            out.extend(block or [])  # an earlier BEGIN without END: not a block
            block = [line]
        elif block is not None and line.startswith(END):
            block = None
        elif block is not None:
            block.append(line)
        else:
            out.append(line)
    return "".join(out + (block or []))


def install(profile: str = "default") -> list[Path]:
    """Add the block (idempotent); returns the files written."""
    folder = profile_dir(profile)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in CONFIG_FILES:
        path = folder / name
        text = _strip(path.read_text()) if path.exists() else ""
        if text and not text.endswith("\n"):
            text += "\n"
        path.write_text(text + BLOCK)
        written.append(path)
    return written


def uninstall(profile: str = "default") -> list[Path]:
    """Remove the block from the files that have it; returns them."""
    changed = []
    for name in CONFIG_FILES:
        path = profile_dir(profile) / name
        if path.exists():
            text = path.read_text()
            stripped = _strip(text)
            if stripped != text:
                path.write_text(stripped)
                changed.append(path)
    return changed
