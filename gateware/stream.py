"""Simulation helpers shared by every block's tests: clock period, stream put/get.

Kept in gateware (not in tests) so that ``combkey.sim`` co-simulations and the host's ``sim://``
link use the same helpers. They import only amaranth.
"""
from amaranth.sim import Simulator

__all__ = ["SIM_CLOCK_HZ", "make_simulator", "stream_put", "stream_get"]

#: Clock frequency used by every pysim run; the one place the period lives (0.6 takes a Period).
SIM_CLOCK_HZ = 100e6


def make_simulator(dut, clock_hz=SIM_CLOCK_HZ, domain="sync"):
    """Return a :class:`Simulator` for ``dut`` with a clock on ``domain``."""
    sim = Simulator(dut)
    sim.add_clock(1 / clock_hz, domain=domain)
    return sim


async def stream_put(ctx, stream, payload):
    """Offer ``payload`` on ``stream`` (a flipped stream interface) until it is accepted."""
    ctx.set(stream.payload, payload)
    ctx.set(stream.valid, 1)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream):
    """Wait for a transfer on ``stream`` and return its payload."""
    ctx.set(stream.ready, 1)
    payload, = await ctx.tick().sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload
