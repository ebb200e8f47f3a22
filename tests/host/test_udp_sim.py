"""udp:// and the record receiver against the simulated gateware stack (pysim) on 127.0.0.1."""
import threading

import pytest

from combkey.device import Device
from combkey.gateware.node import MAGIC
from combkey.netsim import SimNetNode
from combkey.udp import StreamReceiver


@pytest.fixture
def node():
    n = SimNetNode("transmitter", record_period=4)
    t = threading.Thread(target=n.serve, daemon=True)
    t.start()
    yield n
    n.stop()
    t.join()
    n.close()


def test_registers_over_udp_against_simulated_gateware(node):
    with Device.open(f"udp://127.0.0.1:{node.reg_port}", timeout=5.0) as dev:
        assert dev.kind == "transmitter" and dev.read("magic") == MAGIC
        dev.write("scratch", 0xC0FFEE)
        assert dev.read("scratch") == 0xC0FFEE
        assert dev.stats["timeouts"] == 0


def test_record_stream_against_simulated_gateware(node, tmp_path):
    rx = StreamReceiver("127.0.0.1", node.stream_port, out=str(tmp_path / "r.bin"),
                        bind=("127.0.0.1", 0))
    st = rx.run(max_records=360, idle_timeout=20.0)
    rx.close()
    assert st["records"] >= 360 and st["seq_gaps"] == 0 and st["lost_records"] == 0
    data = (tmp_path / "r.bin").read_bytes()
    values = [int.from_bytes(data[i:i + 8], "little") for i in range(0, len(data), 8)]
    assert values == list(range(values[0], values[0] + len(values)))
