"""The ``combkey`` command line.

Subcommands live in their own modules and are imported only when used, so that
``combkey keyrate`` does not pay for importing the HDL and ``combkey --help`` stays fast.
To add a subcommand, add one line to :data:`COMMANDS`: ``name -> "module:attribute"``, where the
attribute is a :class:`click.Command` or :class:`click.Group`.
"""
import importlib
import sys

import click

#: subcommand name -> "module:attribute" of its click command.
COMMANDS = {
    "keyrate": "combkey.keyrate.cli:keyrate",
    "version": "combkey.cli_core:version",
    "bench": "combkey.bench:bench",
    "session": "combkey.session:session",
    "stream": "combkey.udp:stream",
    "netsim": "combkey.netsim:netsim",
    "regmap": "combkey.cli_core:regmap",
    "regs": "combkey.cli_core:regs",
    "demo": "combkey.cli_core:demo",
    "build": "combkey.boards.cli:build",
    "build-probe": "combkey.boards.cli:build_probe",
    "bitstream": "combkey.boards.cli:bitstream",
    "flash": "combkey.boards.cli:flash",
    "tagger": "combkey.tagger:tagger",
    "sim": "combkey.loops:sim",
}


class LazyGroup(click.Group):
    """Click group resolving subcommands from :data:`COMMANDS` on first use."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """combkey: FPGA gateware and host for microcomb WDM TF- and MDI-QKD networks.

    Every command targets the simulated link by default (``sim://NODE``); give
    ``--device serial:///dev/ttyUSB0`` or ``udp://ADDR`` to talk to a board.
    """


def main(argv=None):
    """Run the CLI; exit with status 2 and a one-line message on a user error."""
    try:
        cli.main(args=argv, prog_name="combkey", standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
