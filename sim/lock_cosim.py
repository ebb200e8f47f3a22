"""Closed-loop co-simulation of the control loops with their plants, and lock metrics.

Two engines run the same closed loop, one plant update per loop update:

* :func:`run_model` -- the loop's bit-exact numpy model (:mod:`combkey.gateware.loops`) with the
  plant: fast, for long runs (hours of rep-rate lock, seconds of phase tracking);
* :func:`run_gateware` -- the Amaranth component in the Python simulator, the plant as a
  ``sim.add_process`` stand-in feeding its input stream and reading its actuator stream.

Because the models are bit-exact and the plants are seeded, both engines give identical actuator
sequences for the same seed (tested), so the long model runs speak for the gateware.

Actuator latency (applied in both engines): OPLL, the word computed from block ``j`` drives the
laser from block ``j + OPLL_DELAY`` (detector + core pipeline, about 0.6 us at 100 MHz);
rep-rate lock, the word of gate ``j`` drives gate ``j + 1``; phase compensation, the word
computed from the clicks of period ``k`` drives period ``k + 1``.

:func:`lock_metrics` turns a trace into ``locked``, ``lock_time_s``, ``residual_rms``,
``residual_peak`` (rad for opll/phase, Hz for reprate, after lock), ``actuator_travel`` and,
for phase, ``qber_x_added`` = mean of ``sin^2(delta / 2)`` over the quantum frames.
"""
import dataclasses

import numpy as np

from ..gateware.dsp.lock_monitor import LockMonitorConfig
from ..gateware.dsp.loop_filter import LoopFilterConfig, pi2_coefficients, pid_coefficients
from ..gateware.dsp.ref_phase import events_from_counts
from ..gateware.loops.core import LoopCoreConfig
from ..gateware.loops.opll import OPLL, OPLLModel
from ..gateware.loops.phase_compensator import PhaseCompensator, PhaseCompensatorModel
from ..gateware.loops.reprate import RepRateLock, RepRateLockModel
from .plants import (
    FibrePhaseParams,
    FibrePhasePlant,
    LaserBeatParams,
    LaserBeatPlant,
    MicroringParams,
    MicroringPlant,
)

__all__ = ["LOOPS", "LoopSetup", "default_setup", "run_model", "run_gateware", "lock_metrics",
           "OPLL_DELAY"]

LOOPS = ("opll", "reprate", "phase")
OPLL_DELAY = 3
OPLL_DECIM_LOG2 = 5
OPLL_FTW = 1 << 29            # 12.5 MHz at 100 MHz
OUT_WIDTH = 16


@dataclasses.dataclass(frozen=True)
class LoopSetup:
    """A loop, its register values and its plant parameters."""

    loop: str
    core: LoopCoreConfig
    plant: object
    extra: dict = dataclasses.field(default_factory=dict)   # loop-specific registers

    @property
    def update_s(self):
        if self.loop == "opll":
            return (1 << OPLL_DECIM_LOG2) / self.plant.f_sample
        if self.loop == "reprate":
            return self.plant.gate_s
        return self.plant.period_s


def default_setup(loop, **plant_overrides):
    """Register values and plant of ``loop`` (``opll``, ``reprate`` or ``phase``)."""
    if loop == "opll":
        plant = dataclasses.replace(LaserBeatParams(), **plant_overrides)
        flt = LoopFilterConfig(**pid_coefficients(0.8, 0.02), out_min=-32768, out_max=32767)
        mon = LockMonitorConfig(threshold=5215, lock_samples=64, unlock_samples=64,
                                capture_samples=16, acquire_timeout=1500, sweep_enable=1,
                                sweep_step=6, sweep_min=-30000, sweep_max=30000)
        return LoopSetup(loop, LoopCoreConfig(flt, mon), plant, dict(ftw=OPLL_FTW))
    if loop == "reprate":
        plant = dataclasses.replace(MicroringParams(), **plant_overrides)
        flt = LoopFilterConfig(**pid_coefficients(8.0, 0.2, coef_frac=12), sign=1, out_min=-32768,
                               out_max=32767)
        mon = LockMonitorConfig(threshold=10, lock_samples=100, unlock_samples=50)
        return LoopSetup(loop, LoopCoreConfig(flt, mon, slew=40), plant,
                         dict(target=plant.target_count))
    if loop == "phase":
        plant = dataclasses.replace(FibrePhaseParams(), **plant_overrides)
        flt = LoopFilterConfig(**pi2_coefficients(0.15, 0.03, 0.002), wrap=1,
                               out_min=-32768, out_max=32767)
        mon = LockMonitorConfig(threshold=5215, lock_samples=10, unlock_samples=10)
        return LoopSetup(loop, LoopCoreConfig(flt, mon), plant, dict(min_counts=8))
    raise ValueError(f"loop must be one of {LOOPS}, not {loop!r}")


def _model(setup):
    if setup.loop == "opll":
        return OPLLModel(setup.core, ftw=setup.extra["ftw"], adc_width=setup.plant.adc_width,
                         decim_log2=OPLL_DECIM_LOG2, out_width=OUT_WIDTH)
    if setup.loop == "reprate":
        return RepRateLockModel(setup.core, target=setup.extra["target"], out_width=OUT_WIDTH)
    return PhaseCompensatorModel(setup.core, min_counts=setup.extra["min_counts"],
                                 out_width=OUT_WIDTH)


def _plant(setup, seed):
    cls = {"opll": LaserBeatPlant, "reprate": MicroringPlant, "phase": FibrePhasePlant}
    return cls[setup.loop](setup.plant, seed=seed)


class _Trace:
    def __init__(self, setup):
        self.setup = setup
        self.act, self.locked, self.err, self.extra = [], [], [], []
        self.kick_at = None


def _kick(plant, loop, size):
    if loop == "opll":
        plant.kick_hz += size
    elif loop == "reprate":
        plant.kick_hz += size
    else:
        plant.kick_rad += size


def run_model(setup, n_updates, *, seed=0, kick_at=None, kick=0.0):
    """Closed loop with the numpy model; return a trace dict (see :func:`lock_metrics`).

    ``kick_at`` (update index) applies a step perturbation of size ``kick`` (Hz for opll and
    reprate, rad for phase) to the plant.
    """
    model, plant = _model(setup), _plant(setup, seed)
    tr = _Trace(setup)
    tr.kick_at = kick_at
    loop = setup.loop
    if loop == "opll":
        r = 1 << OPLL_DECIM_LOG2
        pending = [0] * OPLL_DELAY
        for j in range(n_updates):
            if j == kick_at:
                _kick(plant, loop, kick)
            x, ph = plant.step(r, pending[0])
            a = model.update(x)
            pending = pending[1:] + [a]
            tr.act.append(a)
            tr.locked.append(model.core.locked)
            tr.err.append(ph)
    elif loop == "reprate":
        a = 0
        for j in range(n_updates):
            if j == kick_at:
                _kick(plant, loop, kick)
            count, rep_err, heater = plant.step(a)
            a = model.update(count)
            tr.act.append(a)
            tr.locked.append(model.core.locked)
            tr.err.append(rep_err)
            tr.extra.append(heater)
    else:
        a = 0
        for j in range(n_updates):
            if j == kick_at:
                _kick(plant, loop, kick)
            counts, resid = plant.step(a, OUT_WIDTH)
            a = model.update(*counts)
            tr.act.append(a)
            tr.locked.append(model.core.locked)
            tr.err.append(resid)
            tr.extra.append(counts)
    return _finish(tr, model)


def _finish(tr, model):
    mon = model.core.monitor
    return dict(loop=tr.setup.loop, update_s=tr.setup.update_s, act=np.array(tr.act),
                locked=np.array(tr.locked, bool), err=tr.err, extra=tr.extra,
                kick_at=tr.kick_at, loss_count=mon.loss_count, sweep_count=mon.sweep_count,
                setup=tr.setup)


def _set_registers(ctx, dut, setup):
    regs = dict(setup.core.registers())
    prefix = {"opll": "pd.", "reprate": "", "phase": "est."}[setup.loop]
    for k, v in setup.extra.items():
        regs[prefix + k] = v
    names = {r.name for r in dut.registers()}
    for name, value in regs.items():
        if name not in names:
            raise KeyError(f"{setup.loop} has no register {name!r}")
        ctx.set(getattr(dut, name.replace(".", "__")), value)
    return regs


def run_gateware(setup, n_updates, *, seed=0):
    """Closed loop with the Amaranth component in pysim (plant as a process); return a trace.

    Returns the trace dict of :func:`run_model` plus ``cycles`` (simulated clock cycles).
    """
    from ..gateware.stream import make_simulator, stream_get, stream_put

    loop = setup.loop
    plant = _plant(setup, seed)
    if loop == "opll":
        dut = OPLL(adc_width=setup.plant.adc_width, decim_log2=OPLL_DECIM_LOG2,
                   out_width=OUT_WIDTH)
    elif loop == "reprate":
        dut = RepRateLock(out_width=OUT_WIDTH)
    else:
        dut = PhaseCompensator(out_width=OUT_WIDTH)
    sim = make_simulator(dut)
    tr = _Trace(setup)
    cycles = [0]

    async def configure(ctx):
        _set_registers(ctx, dut, setup)

    async def opll_plant(ctx):
        with ctx.critical():
            await _opll_plant(ctx)

    async def _opll_plant(ctx):
        r = 1 << OPLL_DECIM_LOG2
        acts = []
        ctx.set(dut.o.ready, 1)
        await ctx.tick()
        n_blocks = n_updates + OPLL_DELAY + 1
        for j in range(n_blocks):
            if j < OPLL_DELAY:
                word = 0
            elif j - OPLL_DELAY < len(acts):
                word = acts[j - OPLL_DELAY]
            else:
                raise RuntimeError(f"actuator word {j - OPLL_DELAY} not ready by block {j}")
            x, ph = plant.step(r, word)
            if j < n_updates:
                tr.err.append(ph)
            for v in x:
                ctx.set(dut.i.payload, int(v))
                ctx.set(dut.i.valid, 1)
                _, _, ov, op, lk = await ctx.tick().sample(dut.o.valid, dut.o.payload,
                                                           dut.locked)
                cycles[0] += 1
                if ov:
                    acts.append(op)
                    tr.locked.append(bool(lk))
            if len(acts) >= n_updates:
                break
        tr.act.extend(acts[:n_updates])
        del tr.locked[n_updates:]
        del tr.err[n_updates:]

    async def reprate_plant(ctx):
        with ctx.critical():
            await _reprate_plant(ctx)

    async def _reprate_plant(ctx):
        a = 0
        await ctx.tick()
        for _ in range(n_updates):
            count, rep_err, heater = plant.step(a)
            await stream_put(ctx, dut.i, count)
            a = await stream_get(ctx, dut.o)
            _, _, lk = await ctx.tick().sample(dut.locked)
            tr.act.append(a)
            tr.locked.append(bool(lk))
            tr.err.append(rep_err)
            tr.extra.append(heater)

    async def phase_plant(ctx):
        with ctx.critical():
            await _phase_plant(ctx)

    async def _phase_plant(ctx):
        a = 0
        ctx.set(dut.est.ready, 1)
        await ctx.tick()
        rng = np.random.default_rng(seed + 1)
        for _ in range(n_updates):
            counts, resid = plant.step(a, OUT_WIDTH)
            for ev in events_from_counts(*counts, rng=rng):
                await stream_put(ctx, dut.i, ev)
            a = await stream_get(ctx, dut.o)
            _, _, lk = await ctx.tick().sample(dut.locked)
            tr.act.append(a)
            tr.locked.append(bool(lk))
            tr.err.append(resid)
            tr.extra.append(counts)

    sim.add_testbench(configure)
    sim.add_process({"opll": opll_plant, "reprate": reprate_plant, "phase": phase_plant}[loop])
    sim.run()

    class _Mon:
        loss_count = sweep_count = None

    class _Core:
        monitor = _Mon()
        locked = None

    class _M:
        core = _Core()

    out = _finish(tr, _M())
    out["cycles"] = cycles[0]
    return out


def lock_metrics(trace, *, settle_updates=0):
    """Lock figures of a trace (see the module docstring).

    ``lock_time_s``: time of the first update the monitor reports LOCKED. The residual
    statistics cover ``[lock + settle_updates, kick)`` (or to the end without a kick).
    ``relock_time_s`` (with a kick): from the kick to the start of the final locked stretch
    (0 if the kick never unlocked the loop).
    """
    loop = trace["loop"]
    dt = trace["update_s"]
    lk = np.asarray(trace["locked"], bool)
    n = len(lk)
    kick_at = trace.get("kick_at")
    first = np.flatnonzero(lk)
    lock_idx = int(first[0]) + 1 if len(first) else None
    unlocked = np.flatnonzero(~lk)
    final_from = (int(unlocked[-1]) + 1 if len(unlocked) else 0) if n and lk[-1] else None
    res = dict(loop=loop, locked=bool(n and lk[-1]),
               lock_time_s=None if lock_idx is None else lock_idx * dt,
               updates=n, update_s=dt, simulated_s=n * dt,
               loss_count=trace.get("loss_count"), sweep_count=trace.get("sweep_count"))
    if kick_at is not None:
        res["relock_time_s"] = None if final_from is None else max(0, final_from - kick_at) * dt
    s = n if lock_idx is None else min(n, lock_idx + settle_updates)
    end = kick_at if kick_at is not None and kick_at > s else n
    act = trace["act"][s:end]
    if loop == "opll":
        p = trace["setup"].plant
        e = np.angle(np.exp(1j * np.array(trace["err"][s:end])))
        res.update(unit="rad", residual_rms=_rms(e), residual_peak=_peak(e),
                   actuator_travel=None if _ptp(act) is None else _ptp(act) * p.act_hz_per_lsb,
                   actuator_unit="Hz")
    elif loop == "reprate":
        e = np.array(trace["err"][s:end])
        h = np.array(trace["extra"][s:end])
        res.update(unit="Hz", residual_rms=_rms(e), residual_std=_std(e),
                   residual_peak=_peak(e), residual_ptp=_ptp(e),
                   actuator_travel=None if _ptp(h) is None else _ptp(h) * 1e3,
                   actuator_unit="mK")
    else:
        e = np.concatenate(trace["err"][s:end]) if end > s else np.zeros(0)
        unwrapped = np.unwrap(2 * np.pi * np.array(trace["act"][s:end]) / (1 << OUT_WIDTH))
        p = trace["setup"].plant
        res.update(unit="rad", residual_rms=_rms(e), residual_peak=_peak(e),
                   actuator_travel=_ptp(unwrapped), actuator_unit="rad",
                   reference_duty_cycle=p.duty_cycle,
                   qber_x_added=float(np.mean(np.sin(e / 2) ** 2)) if len(e) else None)
    return res


def _rms(e):
    return float(np.sqrt(np.mean(np.square(e)))) if len(e) else None


def _std(e):
    return float(np.std(e)) if len(e) else None


def _peak(e):
    return float(np.max(np.abs(e))) if len(e) else None


def _ptp(e):
    return float(np.ptp(e)) if len(e) else None

