"""The ``nbmigrate`` command line. Commands render report dataclasses; they hold no logic of their own."""

from __future__ import annotations

import click

from . import __version__
from .install import install as do_install
from .install import uninstall as do_uninstall


@click.group()
@click.version_option(__version__, prog_name="nbmigrate")
def main() -> None:
    """Live-migrate Jupyter/IPython sessions: checkpoint, restore, migrate, inspect."""


@main.command()
@click.option("--profile", default="default", show_default=True, help="IPython profile to configure")
def install(profile: str) -> None:
    """Load nbmigrate in every new IPython kernel (edits the profile's config files)."""
    for path in do_install(profile):
        click.echo(f"enabled in {path}")


@main.command()
@click.option("--profile", default="default", show_default=True, help="IPython profile to configure")
def uninstall(profile: str) -> None:
    """Stop loading nbmigrate in new kernels."""
    paths = do_uninstall(profile)
    if not paths:
        click.echo("nbmigrate was not installed in this profile")
    for path in paths:
        click.echo(f"removed from {path}")
