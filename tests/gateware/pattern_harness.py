"""Shared simulation harness for the pattern generator tests (hardware side)."""
import numpy as np
from amaranth.lib import data

from combkey.gateware.pattern.generator import SLOT_DTYPE, PatternGenerator, slot_layout
from combkey.gateware.stream import make_simulator


def decode_lanes(params, words):
    """Decode raw payload integers (one per clock) into per-slot field arrays."""
    lay = data.Layout.cast(slot_layout(params.phase_bits, params.im_bits, params.pm_bits))
    size = lay.size
    out = {}
    vals = [(w >> (j * size)) for w in words for j in range(params.lanes)]
    for name, field in lay:
        mask = (1 << field.width) - 1
        out[name] = np.array([(v >> field.offset) & mask for v in vals], dtype=np.int64)
    return out


def rtl_run(params, regs, key_int, n_slots, qrng_words=None, max_cycles=None):
    """Configure a PatternGenerator through its register ports, start it and collect slots.

    Returns a SLOT_DTYPE array (the ``slot`` field numbered from ``frame0 * frame_len``) and
    the final values of the counters and status ports.
    """
    dut = PatternGenerator(params)
    sim = make_simulator(dut)
    L = params.lanes
    n_clocks = -(-n_slots // L)
    payloads = []
    final = {}
    max_cycles = max_cycles or (n_clocks + 200 + 2 * 1152)

    async def tb(ctx):
        for name, value in regs.writes(params, key_int, run=False)[:-1]:
            if name in ("im_lut", "pm_lut"):
                ctx.set(getattr(dut, name), value)
                ctx.set(getattr(dut, name + "_stb"), 1)
                await ctx.tick()
                ctx.set(getattr(dut, name + "_stb"), 0)
            else:
                ctx.set(getattr(dut, name), value)
        for word in qrng_words if qrng_words is not None else ():
            ctx.set(dut.qrng_data, int(word))
            ctx.set(dut.qrng_data_stb, 1)
            await ctx.tick()
        ctx.set(dut.qrng_data_stb, 0)
        ctx.set(dut.ctrl, 1 | int(regs.qrng) << 1 | int(regs.mdi) << 2)
        ctx.set(dut.ctrl_stb, 1)
        await ctx.tick()
        ctx.set(dut.ctrl_stb, 0)
        payload = dut.o.payload.as_value()
        cycles = 0
        while len(payloads) < n_clocks and cycles < max_cycles:
            await ctx.tick()
            cycles += 1
            if ctx.get(dut.o.valid):
                payloads.append(ctx.get(payload))
        ctx.set(dut.ctrl, int(regs.qrng) << 1 | int(regs.mdi) << 2)    # stop
        ctx.set(dut.ctrl_stb, 1)
        await ctx.tick()
        ctx.set(dut.ctrl_stb, 0)
        if ctx.get(dut.o.valid):
            payloads.append(ctx.get(payload))
        for _ in range(4):
            await ctx.tick()
            if ctx.get(dut.o.valid):
                payloads.append(ctx.get(payload))
        for c in range(7):
            final[f"count{c}"] = ctx.get(getattr(dut, f"count{c}"))
        for name in ("frame", "frame_pos", "qrng_level", "qrng_overflow", "status"):
            final[name] = ctx.get(getattr(dut, name))

    sim.add_testbench(tb)
    sim.run()
    f = decode_lanes(params, payloads)
    out = np.empty(len(payloads) * L, dtype=SLOT_DTYPE)
    out["slot"] = regs.frame0 * regs.frame_len + np.arange(out.size)
    out["cls"] = f["cls"]
    out["basis"] = f["basis"]
    out["bit"] = f["bit"]
    out["phase_slice"] = f["phase_slice"] if params.phase_bits else 0
    out["im_code"] = f["im_code"]
    out["pm_code"] = f["pm_code"]
    return out, final
