"""The relay's time-tagging core: TDC, slot clock, tagger, classifier, histograms, register bank.

:class:`RelayTagger` wires the blocks of this package behind one :class:`~..regs.RegisterBank`
(``bus: In(RegBus)``). Register groups (prefix ``.`` name): ``tdc`` (:class:`~.tdc.TDC`),
``slot`` (:class:`~.classifier.SlotClock`), ``tagger`` (:class:`~.tagger.Tagger`), ``cls``
(:class:`~.classifier.SlotClassifier`), ``hist`` (:class:`~.histogram.Histogrammer`) and
``relay.dl_enable`` (RW 1, reset 1: run the delay lines). :func:`relay_regmap` returns the map
without elaborating anything, so the host can address a relay by name.

Members: ``bus: In(RegBus)``; with ``ecp5=True`` ``pulse: In(channels)`` (detector inputs into
:class:`~.tdc.ECP5DelayLine` chains, one per line), otherwise ``therm`` (the sampled taps, driven
by :class:`~.tdc.DelayLineModel` in simulation; same layout as :class:`~.tdc.TDC`).
Data path: TDC -> Tagger (batch buffer, calibration table, tag FIFO) -> SlotClassifier (records
FIFO) -> Histogrammer; back-pressure from either FIFO stalls the path and every hit that then
finds the batch buffer full is counted in ``tagger.lost_<c>``.
"""
from amaranth.hdl import Cat, Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In

from ..regs import Access, Reg, RegBus, RegisterBank, RegisterMap, connect_registers
from .classifier import SlotClassifier, SlotClock
from .histogram import Histogrammer
from .tagger import Tagger
from .tdc import TDC, ECP5DelayLine, check_tdc_params

__all__ = ["RelayTagger", "relay_regmap", "RELAY_REGS"]

RELAY_REGS = [Reg("dl_enable", 1, Access.RW, 1, "1: the carry chains propagate hits.")]


class _Blocks:
    def __init__(self, channels, lines, taps, bins, batch_depth, tag_depth, record_depth):
        self.tdc = TDC(channels, lines, taps)
        self.slot = SlotClock()
        self.tagger = Tagger(channels, self.tdc.code_bits, batch_depth, tag_depth)
        self.cls = SlotClassifier(channels, record_depth)
        self.hist = Histogrammer(channels, bins)

    def groups(self):
        return [("relay", RELAY_REGS), ("tdc", self.tdc.registers()),
                ("slot", self.slot.registers()), ("tagger", self.tagger.registers()),
                ("cls", self.cls.registers()), ("hist", self.hist.registers())]


def relay_regmap(channels=16, lines=4, taps=128, bins=1024):
    """The :class:`~..regs.RegisterMap` of a :class:`RelayTagger` of this shape."""
    check_tdc_params(channels, lines, taps)
    b = _Blocks.__new__(_Blocks)
    # Build register lists without elaborating components: instantiate then mark them used.
    b.tdc, b.slot = TDC(channels, lines, taps), SlotClock()
    b.tagger = Tagger(channels, b.tdc.code_bits)
    b.cls, b.hist = SlotClassifier(channels), Histogrammer(channels, bins)
    regmap = RegisterMap(b.groups())
    for comp in (b.tdc, b.slot, b.tagger, b.cls, b.hist):
        _mark_used(comp)
    return regmap


def _mark_used(comp):
    # The components above exist only to list their registers; elaborating them into a throwaway
    # fragment marks them used, which is the supported way (no private attributes touched).
    from amaranth.hdl import Fragment
    Fragment.get(comp, None)


class RelayTagger(wiring.Component):
    """Time-tagging core of the relay (module docstring)."""

    def __init__(self, channels=16, lines=4, taps=128, bins=1024, ecp5=False, batch_depth=8,
                 tag_depth=512, record_depth=512):
        check_tdc_params(channels, lines, taps)
        self.shape = (channels, lines, taps)
        self.ecp5 = ecp5
        self.blocks = _Blocks(channels, lines, taps, bins, batch_depth, tag_depth, record_depth)
        self.regmap = RegisterMap(self.blocks.groups())
        members = {"bus": In(RegBus)}
        if ecp5:
            members["pulse"] = In(channels)
        else:
            members["therm"] = In(data.ArrayLayout(lines * taps, channels))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        b = self.blocks
        channels, lines, taps = self.shape
        m.submodules.bank = bank = RegisterBank(self.regmap)
        wiring.connect(m, wiring.flipped(self.bus), bank.bus)
        for name in ("tdc", "slot", "tagger", "cls", "hist"):
            blk = getattr(b, name)
            m.submodules[name] = blk
            connect_registers(m, bank, name, blk)
        if self.ecp5:
            for c in range(channels):
                chains = []
                for ln in range(lines):
                    dl = ECP5DelayLine(taps)
                    m.submodules[f"dl{c}_{ln}"] = dl
                    m.d.comb += [dl.hit.eq(self.pulse[c]),
                                 dl.enable.eq(bank.reg("relay.dl_enable").data)]
                    chains.append(dl.taps)
                m.d.comb += b.tdc.therm[c].eq(Cat(*chains))
        else:
            m.d.comb += b.tdc.therm.eq(self.therm)
        m.d.comb += [b.tagger.hit.eq(b.tdc.hit), b.tagger.code.eq(b.tdc.code),
                     b.tagger.slot_edge.eq(b.slot.slot_edge),
                     b.tagger.phase_edge.eq(b.slot.phase_edge),
                     b.cls.period.eq(b.slot.period), b.cls.recip.eq(b.slot.recip)]
        wiring.connect(m, b.tagger.o, b.cls.i)
        wiring.connect(m, b.cls.a, b.hist.a)
        return m
