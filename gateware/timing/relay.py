"""The relay's time-tagging core: TDC, slot clock, tagger, classifier, histograms.

:class:`TimingBlocks` builds the blocks of this package and wires them; a node top maps their
registers (``blocks()`` gives ``[(prefix, block)]`` for ``connect_registers``) and calls
``connect(m, ...)`` for the data path. :class:`RelayTagger` is the standalone core with its own
:class:`~..regs.RegisterBank` (``bus: In(RegBus)``), used by the synthesis benchmark and tests.

Register groups (prefix): ``tdc`` (:class:`~.tdc.TDC`), ``slot``
(:class:`~.classifier.SlotClock`), ``tagger`` (:class:`~.tagger.Tagger`), ``cls``
(:class:`~.classifier.SlotClassifier`), ``hist`` (:class:`~.histogram.Histogrammer`); the host
addresses them as ``tagger.tags``, ``cls.records``, ... :func:`relay_regmap` returns the map.

Inputs: with ``ecp5=True`` ``pulse: In(channels)`` (detector inputs into
:class:`~.tdc.ECP5DelayLine` chains, one per line; ``placement``, e.g. from
:func:`~.tdc.tdc_placement`, maps ``(channel, line)`` to the chain's BEL names), otherwise
``therm`` (the sampled taps, driven by :class:`~.tdc.DelayLineModel` in simulation; same
layout as :class:`~.tdc.TDC`).
Data path: TDC -> Tagger (batch buffer, calibration table, tag FIFO) -> 4-deep click FIFO ->
SlotClassifier (record FIFO) -> Histogrammer. Back-pressure from either FIFO stalls the path;
every hit that then finds the batch buffer full is counted in ``tagger.lost_<c>``.
"""
from amaranth.hdl import Cat, Module
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In

from ..regs import RegBus, RegisterBank, RegisterMap, connect_registers
from .classifier import SlotClassifier, SlotClock
from .histogram import Histogrammer
from .tagger import Click, Tagger
from .tdc import TDC, ECP5DelayLine, check_tdc_params

__all__ = ["TimingBlocks", "RelayTagger", "relay_regmap"]


class TimingBlocks:
    """The relay's timing blocks of one shape (module docstring)."""

    PREFIXES = ("tdc", "slot", "tagger", "cls", "hist")

    def __init__(self, channels=16, lines=4, taps=128, bins=1024, batch_depth=8, tag_depth=512,
                 record_depth=512, placement=None):
        check_tdc_params(channels, lines, taps)
        self.shape = (channels, lines, taps)
        if placement is not None:
            missing = [(c, ln) for c in range(channels) for ln in range(lines)
                       if (c, ln) not in placement]
            if missing:
                raise ValueError(f"placement must have BEL lists for every (channel, line), "
                                 f"missing {missing[:4]!r}")
        self.placement = placement
        self.tdc = TDC(channels, lines, taps)
        self.slot = SlotClock()
        self.tagger = Tagger(channels, self.tdc.code_bits, batch_depth, tag_depth)
        self.cls = SlotClassifier(channels, record_depth)
        self.hist = Histogrammer(channels, bins)

    def blocks(self):
        """``[(prefix, block)]`` for a node's register map."""
        return [(p, getattr(self, p)) for p in self.PREFIXES]

    def groups(self):
        return [(p, b.registers()) for p, b in self.blocks()]

    def connect(self, m, *, therm=None, pulse=None):
        """Add the blocks to ``m`` and wire the data path from ``therm`` or ``pulse``."""
        channels, lines, taps = self.shape
        for p, b in self.blocks():
            m.submodules[p] = b
        if pulse is not None:
            for c in range(channels):
                chains = []
                for ln in range(lines):
                    dl = ECP5DelayLine(taps, None if self.placement is None
                                       else self.placement[(c, ln)])
                    m.submodules[f"dl{c}_{ln}"] = dl
                    m.d.comb += dl.hit.eq(pulse[c])
                    chains.append(dl.taps)
                m.d.comb += self.tdc.therm[c].eq(Cat(*chains))
        else:
            m.d.comb += self.tdc.therm.eq(therm)
        m.d.comb += [self.tagger.hit.eq(self.tdc.hit), self.tagger.code.eq(self.tdc.code),
                     self.tagger.slot_edge.eq(self.slot.slot_edge),
                     self.tagger.phase_edge.eq(self.slot.phase_edge),
                     self.cls.period.eq(self.slot.period), self.cls.recip.eq(self.slot.recip)]
        # A small FIFO between tagger and classifier registers both valid and ready, so the
        # classifier's stall logic and the tagger's serializer are separate timing paths.
        m.submodules.click_fifo = cf = SyncFIFOBuffered(width=Click.as_shape().size, depth=4)
        m.d.comb += [cf.w_data.eq(self.tagger.o.payload), cf.w_en.eq(self.tagger.o.valid),
                     self.tagger.o.ready.eq(cf.w_rdy),
                     self.cls.i.payload.eq(cf.r_data), self.cls.i.valid.eq(cf.r_rdy),
                     cf.r_en.eq(self.cls.i.ready)]
        wiring.connect(m, self.cls.a, self.hist.a)


def relay_regmap(channels=16, lines=4, taps=128, bins=1024):
    """The :class:`~..regs.RegisterMap` of a :class:`RelayTagger` of this shape."""
    tb = TimingBlocks(channels, lines, taps, bins)
    regmap = RegisterMap(tb.groups())
    # The blocks existed only to list their registers; elaborating them into a throwaway
    # fragment marks them used.
    from amaranth.hdl import Fragment
    for _, b in tb.blocks():
        Fragment.get(b, None)
    return regmap


class RelayTagger(wiring.Component):
    """Standalone time-tagging core with its register bank (module docstring)."""

    def __init__(self, channels=16, lines=4, taps=128, bins=1024, ecp5=False, batch_depth=8,
                 tag_depth=512, record_depth=512, placement=None):
        self._MustUse__silence = True            # until the checks below have passed
        self.timing = TimingBlocks(channels, lines, taps, bins, batch_depth, tag_depth,
                                   record_depth, placement)
        self.regmap = RegisterMap(self.timing.groups())
        self._MustUse__silence = False
        self.ecp5 = ecp5
        members = {"bus": In(RegBus)}
        if ecp5:
            members["pulse"] = In(channels)
        else:
            members["therm"] = In(data.ArrayLayout(lines * taps, channels))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.bank = bank = RegisterBank(self.regmap)
        wiring.connect(m, wiring.flipped(self.bus), bank.bus)
        for p, b in self.timing.blocks():
            connect_registers(m, bank, p, b)
        if self.ecp5:
            self.timing.connect(m, pulse=self.pulse)
        else:
            self.timing.connect(m, therm=self.therm)
        return m
