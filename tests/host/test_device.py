"""Device over sim:// (the node gateware in pysim): identity, scratch, errors, retries, CLI."""
import pytest
from click.testing import CliRunner

from combkey.cli import cli
from combkey.device import Device, DeviceError, Link, LinkTimeout, SimLink, open_link
from combkey.gateware.node import MAGIC, RelayNode
from combkey.gateware.regs import RegisterMap


@pytest.fixture(scope="module")
def dev():
    return Device(SimLink("transmitter"))


def test_identity_and_scratch(dev):
    assert dev.kind == "transmitter"
    assert dev.read("magic") == MAGIC
    assert dev.read("node_kind") == 1
    assert dev.read("clk_hz") == 100_000_000
    assert dev.read("map_hash") == dev.regmap.map_hash()
    for value in (0, 0xFFFF_FFFF, 0x1234_5678):
        dev.write("scratch", value)
        assert dev.read("scratch") == value
    up1 = dev.read("uptime")
    up2 = dev.read("uptime")
    assert up2 > up1 > 0


def test_dump_matches_single_reads(dev):
    dev.write("scratch", 77)
    values = dev.dump()
    assert values["scratch"] == 77 and values["magic"] == MAGIC
    assert values["bridge.crc_errors"] == 0


def test_errors_name_the_problem(dev):
    with pytest.raises(DeviceError, match="no register named 'scrach'.*did you mean scratch"):
        dev.read("scrach")
    with pytest.raises(DeviceError, match=r"register 'scratch' value must be in \[0, 4294967295\]"):
        dev.write("scratch", 1 << 32)
    with pytest.raises(DeviceError, match="register 'magic' is read-only"):
        dev.write("magic", 1)
    with pytest.raises(DeviceError, match="device URL must look like"):
        open_link("ttyUSB0")
    with pytest.raises(DeviceError, match="scheme must be one of"):
        open_link("ftp://x")
    with pytest.raises(DeviceError, match="sim URL must name a node kind"):
        open_link("sim://alice")
    with pytest.raises(DeviceError, match="cannot open serial port '/dev/combkey-missing'"):
        open_link("serial:///dev/combkey-missing")
    with pytest.raises(DeviceError, match="URL option baud must be an integer"):
        open_link("serial:///dev/x?baud=fast")


def test_map_hash_mismatch_refused():
    link = SimLink("relay", node=RelayNode())
    with pytest.raises(DeviceError, match="register map hash .* differ"):
        Device(link, regmap=RegisterMap([("", [])]))


class LossyLink(Link):
    """Wraps a link; drops or corrupts chosen responses (by exchange number)."""

    def __init__(self, inner, drop=(), corrupt=()):
        self.inner, self.drop, self.corrupt = inner, set(drop), set(corrupt)
        self.url = "lossy+" + inner.url
        self.node = inner.node
        self.n = 0

    def exchange(self, request, timeout):
        self.n += 1
        frame = self.inner.exchange(request, timeout)
        if self.n in self.drop:
            return None
        if self.n in self.corrupt:
            return frame[:-1] + bytes([frame[-1] ^ 0xFF])
        return frame


def test_retries_do_not_apply_a_write_twice():
    inner = SimLink("transmitter")
    link = LossyLink(inner, drop={2}, corrupt={4})
    dev = Device(link)                       # exchange 1
    dev.write("scratch", 5)                  # exchange 2 lost, 3 retried (duplicate)
    assert dev.read("scratch") == 5          # exchange 4 corrupted, 5 retried
    assert dev.stats["timeouts"] == 1 and dev.stats["bad_frames"] == 1
    assert dev.read("bridge.duplicates") == 1


def test_no_response_is_reported():
    class Dead(Link):
        url = "dead://"

        def exchange(self, request, timeout):
            return None
    with pytest.raises(LinkTimeout, match="no response within .* after 4 attempts"):
        Device(Dead())


def test_cli_regs_and_regmap():
    runner = CliRunner()
    r = runner.invoke(cli, ["regs", "--device", "sim://transmitter", "read", "magic"])
    assert r.exit_code == 0, r.output
    assert "0x434b4559" in r.output
    r = runner.invoke(cli, ["regs", "--device", "sim://relay", "write", "scratch", "0x10"])
    assert r.exit_code == 0 and "scratch <= 0x10" in r.output
    r = runner.invoke(cli, ["regs", "read", "nope"])
    assert r.exit_code == 1 and "no register named 'nope'" in r.output
    r = runner.invoke(cli, ["regs", "write", "scratch", "ten"])
    assert r.exit_code == 2 and "value must be an integer" in r.output
    r = runner.invoke(cli, ["regmap", "--node", "relay", "--format", "json"])
    assert r.exit_code == 0 and '"map_hash"' in r.output
    r = runner.invoke(cli, ["demo"])
    assert r.exit_code == 0 and "scratch write/read-back: ok" in r.output
