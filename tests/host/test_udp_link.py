"""udp:// register link and record receiver against a local responder with a lossy network.

The responder on 127.0.0.1 is the gateware's own model: each datagram is wrapped in the Ethernet
frame the node would receive and handed to :class:`NetModel` (stale filter, ports) whose
register brain is the bridge model over the node's register bank model. Requests and responses
are dropped, duplicated and delayed past later datagrams (reordered) on purpose.
"""
import random
import socket
import threading
import time

import pytest
from amaranth.hdl import Fragment
from click.testing import CliRunner

from combkey.cli import cli
from combkey.device import Device, DeviceError, open_link
from combkey.gateware.bridge import BridgeModel
from combkey.gateware.net.stack import (
    DEFAULT_IP,
    DEFAULT_MAC,
    REG_PORT,
    NetModel,
    encode_stream_header,
    udp_frame,
)
from combkey.gateware.node import MAGIC, NODE_KINDS, TransmitterNode
from combkey.gateware.regs import BankModel
from combkey.udp import StreamReceiver, UdpLink, parse_udp_url

HOST_MAC = 0x02_00_00_00_00_AA
HOST_IP = 0x0A_00_00_01


class Impairment:
    """Drop, duplicate or hold back datagrams, seeded."""

    def __init__(self, seed, drop=0.0, dup=0.0, delay=0.0):
        self.rng = random.Random(seed)
        self.drop, self.dup, self.delay = drop, dup, delay
        self.held = []
        self.counts = {"dropped": 0, "duplicated": 0, "delayed": 0}

    def route(self, item):
        """Return the items to deliver now (held ones come out after a later datagram)."""
        out = []
        r = self.rng.random()
        if r < self.drop:
            self.counts["dropped"] += 1
        elif r < self.drop + self.delay:
            self.counts["delayed"] += 1
            self.held.append(item)
            return out
        else:
            out.append(item)
            if self.rng.random() < self.dup:
                self.counts["duplicated"] += 1
                out.append(item)
        if self.held and self.rng.random() < 0.5:
            out.append(self.held.pop(0))
        return out


class Responder(threading.Thread):
    """A transmitter node's UDP face, modelled (see the module docstring)."""

    def __init__(self, requests=None, responses=None):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        node = TransmitterNode()
        Fragment.get(node, None)             # elaborated once, as node_regmap does
        self.regmap = node.regmap
        self.bank = BankModel(self.regmap)
        self.bank.inputs.update(magic=MAGIC, map_hash=self.regmap.map_hash(),
                                node_kind=NODE_KINDS["transmitter"], params=node.params_word())
        self.bridge = BridgeModel(self.bank, map_size=self.regmap.size)
        self.model = NetModel(bridge=self._brain, reg_port=self.port)
        self.requests = requests or Impairment(0)
        self.responses = responses or Impairment(1)
        self.running = True

    def _brain(self, payload):
        n = len(self.bridge.out)
        self.bridge.feed(payload)
        self.bridge.idle(1 << 30)
        return bytes(self.bridge.out[n:])

    def run(self):
        while self.running:
            try:
                payload, addr = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            for p in self.requests.route(payload):
                frame = udp_frame(DEFAULT_MAC, HOST_MAC, HOST_IP, DEFAULT_IP, addr[1], self.port,
                                  p)
                frame += bytes(max(0, 60 - len(frame)))
                for reply in self.model.receive(frame):
                    for r in self.responses.route(reply[42:]):
                        self.sock.sendto(r, addr)

    def stop(self):
        self.running = False
        self.join()
        self.sock.close()


@pytest.fixture
def clean():
    r = Responder()
    r.start()
    yield r
    r.stop()


def test_register_access_over_udp(clean):
    with Device.open(f"udp://127.0.0.1:{clean.port}") as dev:
        assert dev.kind == "transmitter" and dev.read("magic") == MAGIC
        dev.write("scratch", 0x1234_5678)
        assert dev.read("scratch") == 0x1234_5678
        assert dev.stats["timeouts"] == 0


def test_lossy_network_no_wrong_write_and_every_loss_reported():
    resp = Responder(requests=Impairment(11, drop=0.15, dup=0.15, delay=0.15),
                     responses=Impairment(12, drop=0.15, dup=0.15, delay=0.15))
    resp.start()
    try:
        link = UdpLink("127.0.0.1", resp.port)
        dev = Device(link, retries=30, timeout=0.03)
        rng = random.Random(3)
        written = []
        transactions = 1                     # the identity burst read
        for _ in range(60):
            value = rng.getrandbits(32)
            dev.write("scratch", value)
            written.append(value)
            assert dev.read("scratch") == value
            transactions += 2
        dev.close()
    finally:
        resp.stop()
    # Every write reached the register exactly once and in order: no retry, duplicate or late
    # copy applied a write twice or an old write after a newer one.
    applied = [v for name, v in resp.bank.strobes if name == "scratch"]
    assert applied == written
    assert resp.model.counters["stale"] > 0 and resp.bridge.counters["duplicates"] > 0
    # Every loss was seen: each extra request answers a reported timeout, bad or stale frame.
    s = dev.stats
    assert s["requests"] - transactions == s["timeouts"] + s["bad_frames"] + s["stale"]
    lost = resp.requests.counts["dropped"] + resp.responses.counts["dropped"]
    assert lost > 0 and s["timeouts"] >= lost - resp.requests.counts["delayed"] \
        - resp.responses.counts["delayed"]
    assert link.stats["timeouts"] == s["timeouts"]


def test_udp_url_errors():
    with pytest.raises(DeviceError, match="udp URL must name a host"):
        open_link("udp://:7001")
    with pytest.raises(DeviceError, match="udp URL port must be an integer in"):
        open_link("udp://10.0.0.2:notaport")
    assert parse_udp_url("udp://10.0.0.2") == ("10.0.0.2", REG_PORT)


def _stream_sender(port_box, n_datagrams, per, impair, done):
    """Play the node's stream side: wait for STREAM_START, then send datagrams."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port_box.append(sock.getsockname()[1])
    sock.settimeout(5)
    cmd, addr = sock.recvfrom(64)
    assert cmd == b"\x01"
    for seq in range(n_datagrams):
        recs = b"".join((seq * per + i).to_bytes(8, "little") for i in range(per))
        payload = encode_stream_header(seq, seq * per, 0, 7, per) + recs
        for p in impair.route(payload):
            sock.sendto(p, addr)
            time.sleep(0.0002)
    for p in impair.held:
        sock.sendto(p, addr)
    done.set()
    sock.close()


def test_stream_receiver_counts_gaps_late_and_duplicates(tmp_path):
    impair = Impairment(21, drop=0.1, dup=0.1, delay=0.1)
    port_box, done = [], threading.Event()
    per = 4
    t = threading.Thread(target=_stream_sender, args=(port_box, 300, per, impair, done))
    t.start()
    while not port_box:
        time.sleep(0.001)
    out = tmp_path / "rec.bin"
    rx = StreamReceiver("127.0.0.1", port_box[0], out=str(out), bind=("127.0.0.1", 0))
    st = rx.run(idle_timeout=0.5)
    rx.close()
    t.join()
    dropped = impair.counts["dropped"]
    assert st["missing_datagrams"] == dropped
    assert st["lost_records"] == per * dropped
    assert st["duplicates"] == impair.counts["duplicated"]
    assert st["reordered"] > 0 and st["upstream_dropped"] == 0
    data = out.read_bytes()
    got = sorted(int.from_bytes(data[i:i + 8], "little") for i in range(0, len(data), 8))
    assert len(got) == st["records"] == per * (300 - dropped)
    assert len(set(got)) == len(got)


def test_stream_cli_reports(tmp_path):
    impair = Impairment(5)
    port_box, done = [], threading.Event()
    t = threading.Thread(target=_stream_sender, args=(port_box, 50, 3, impair, done))
    t.start()
    while not port_box:
        time.sleep(0.001)
    out = tmp_path / "r.bin"
    res = CliRunner().invoke(cli, ["stream", "--device", f"udp://127.0.0.1:{port_box[0]}",
                                   "--out", str(out), "--idle", "0.5"])
    t.join()
    assert res.exit_code == 0, res.output
    assert "150 records in 50 datagrams" in res.output
    assert "sequence gaps 0 (0 datagrams, 0 records lost)" in res.output
    assert out.stat().st_size == 150 * 8
    bad = CliRunner().invoke(cli, ["stream", "--device", "serial:///dev/x", "--out", str(out)])
    assert bad.exit_code == 2 and "device URL must be udp://ADDR[:PORT]" in bad.output
