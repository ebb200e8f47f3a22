"""Tag stream: tag word, channel merge, fine calibration, tag FIFO with loss counters.

Tag word (:class:`TagWord`, 64 bits, the host decodes it with :func:`decode_tags`)
------------------------------------------------------------------------------------
==========  ======  ====  ====================================================================
field       bits    at    meaning
==========  ======  ====  ====================================================================
channel     5       0     input channel 0..31
flags       3       5     bit 0 ``valid`` (1 in every tag; an empty FIFO reads as 0),
                          bit 1 ``raw`` (fine is the uncalibrated code), bit 2 ``lost_before``
                          (one or more hits of this channel were lost before this tag)
fine        17      8     calibrated: tagger units ``T/38400`` from the hit to the detecting
                          edge (``tdc.UNITS_PER_CYCLE``); raw: the ones count
coarse      39      25    free-running cycle counter (wraps every 2**39 cycles, 45 min at
                          200 MHz; :func:`unwrap_coarse` unwraps)
==========  ======  ====  ====================================================================

Timestamp in tagger units: ``t = coarse * UNITS_PER_CYCLE - fine`` (:func:`timestamps`). The
constant pipeline latency and each channel's lead-tap delay appear as a per-channel offset that
the host removes with a reference measurement.

Tagger
------
Parameters: ``channels``, ``code_bits`` (of the TDC), ``batch_depth`` (cycles of hits buffered
before the serializer, default 8), ``tag_depth`` (tag FIFO words, default 512), ``coarse_init``
(counter start, for wrap tests), ``cal_init`` (``channels * 2**code_bits`` table entries, channel-
major; default all zero).

Members
    ``hit: In(channels)``, ``code: In(ArrayLayout(code_bits, channels))``: from :class:`~.tdc.TDC`.
    ``slot_edge: In(32)``, ``phase_edge: In(24)``: slot index and phase (tagger units) of the
    current clock edge, from :class:`~.classifier.SlotClock`; stored with each hit.
    ``o: Out(stream.Signature(Click))``: merged, calibrated clicks for the classifier.
    Registers (``registers()``): ``raw`` (RW 1: bypass the table), ``tag_enable`` (RW 1: copy
    clicks into the tag FIFO; while it is full the pipeline stalls), ``cal_addr`` (RW 16:
    ``channel << code_bits | code``), ``cal_data`` (W1P 17: write the table entry at
    ``cal_addr``), ``tags`` (R 64: FIFO head as a :class:`TagWord`, popped by reading its first
    word), ``tag_level`` (R 16), ``tagged`` (R 32: clicks delivered), ``lost_<c>`` (R 32: hits
    of channel ``c`` dropped because the batch buffer was full).

Order and losses: every cycle with hits writes one batch entry; the serializer emits its
channels lowest first, one per cycle, so the stream is ordered by ``coarse`` (ties by channel,
not by fine time). When the batch buffer is full the cycle's hits are counted in ``lost_<c>``
and the channel's next tag carries ``lost_before``: a hit is tagged, counted as lost, or counted
as dead in the TDC, never dropped silently. Sustained throughput: one click per cycle.
Pipeline: the serializer's choice (channel, its code) is registered (stage ``sel``), the
calibration table is read at that registered address (stage ``lk``) and its output registered
into the ``o`` payload (stage ``st``; a block RAM's output is too slow to use directly); the
stages advance when ``o`` is free or accepted. A hit presented in cycle ``k`` is on ``o`` in
cycle ``k + 6`` when nothing waits. The tag FIFO's head is a register behind the FIFO
(:func:`fifo_head`): ``tags`` is there the cycle after the previous head was popped, and
``tag_level`` counts it. :func:`tagger_model` is cycle-exact.
"""
import collections
import dataclasses

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..regs import Access, Reg
from .tdc import UNITS_PER_CYCLE

__all__ = ["TagWord", "Click", "fifo_head", "HeadModel",
           "FLAG_VALID", "FLAG_RAW", "FLAG_LOST", "COARSE_BITS", "FINE_BITS",
           "Tagger", "TaggerConfig", "tagger_model", "FifoModel", "decode_tags", "encode_tag",
           "unwrap_coarse",
           "timestamps"]

COARSE_BITS = 39
FINE_BITS = 17
FLAG_VALID, FLAG_RAW, FLAG_LOST = 1, 2, 4


class TagWord(data.Struct):
    """One time tag (module docstring)."""

    channel: 5
    flags: 3
    fine: FINE_BITS
    coarse: COARSE_BITS


class Click(data.Struct):
    """Merged click inside the relay: a tag plus the slot clock at its detecting edge."""

    channel: 5
    flags: 3
    fine: FINE_BITS
    coarse: COARSE_BITS
    slot_edge: 32
    phase_edge: 24


_TAG_FIELDS = [(n, data.Layout.cast(TagWord)[n].offset, data.Layout.cast(TagWord)[n].width)
               for n in ("channel", "flags", "fine", "coarse")]
TAG_DTYPE = np.dtype([("channel", np.int64), ("flags", np.int64), ("fine", np.int64),
                      ("coarse", np.int64)])


def decode_tags(raw):
    """Decode 64-bit tag words (``uint64`` array) with the :class:`TagWord` layout.

    Returns a structured array with fields ``channel, flags, fine, coarse`` (int64). Words with
    ``valid`` clear (reads of an empty FIFO) are dropped.
    """
    raw = np.asarray(raw, dtype=np.uint64)
    out = np.zeros(raw.shape, TAG_DTYPE)
    for name, off, width in _TAG_FIELDS:
        out[name] = ((raw >> np.uint64(off)) & np.uint64((1 << width) - 1)).astype(np.int64)
    return out[(out["flags"] & FLAG_VALID) != 0]


def encode_tag(channel, flags, fine, coarse):
    """Return the 64-bit word of one tag (via the :class:`TagWord` layout)."""
    return TagWord.const({"channel": channel, "flags": flags, "fine": fine,
                          "coarse": coarse}).as_value().value


def unwrap_coarse(coarse, bits=COARSE_BITS):
    """Unwrap a time-ordered coarse sequence that wraps at ``2**bits``."""
    c = np.asarray(coarse, dtype=np.int64)
    if c.size == 0:
        return c
    step = np.diff(c)
    wraps = np.concatenate([[0], np.cumsum(step < -(1 << (bits - 1)))])
    return c + (wraps << bits)


def timestamps(tags):
    """Timestamps in tagger units (``T / UNITS_PER_CYCLE``) of decoded tags, coarse unwrapped."""
    return unwrap_coarse(tags["coarse"]) * UNITS_PER_CYCLE - tags["fine"]


class Tagger(wiring.Component):
    """Channel merge, calibration table and tag FIFO (module docstring)."""

    def __init__(self, channels=16, code_bits=10, batch_depth=8, tag_depth=512, coarse_init=0,
                 cal_init=None):
        self.cfg = TaggerConfig(channels, code_bits, batch_depth, tag_depth, coarse_init,
                                cal_init)
        members = {
            "hit": In(channels),
            "code": In(data.ArrayLayout(code_bits, channels)),
            "slot_edge": In(32),
            "phase_edge": In(24),
            "o": Out(stream.Signature(Click)),
            "raw": In(1), "tag_enable": In(1), "cal_addr": In(16),
            "cal_data": In(FINE_BITS), "cal_data_stb": In(1),
            "tags": Out(64), "tags_rd": In(1), "tag_level": Out(16), "tagged": Out(32),
        }
        for c in range(channels):
            members[f"lost_{c}"] = Out(32)
        super().__init__(members)

    def registers(self):
        regs = [
            Reg("raw", 1, Access.RW, 0, "1: tags carry the raw ones count (calibration runs)."),
            Reg("tag_enable", 1, Access.RW, 1, "1: clicks are copied into the tag FIFO."),
            Reg("cal_addr", 16, Access.RW, 0, "Calibration table address: channel << code_bits"
                " | code."),
            Reg("cal_data", FINE_BITS, Access.W1P, 0, "Write the table entry at cal_addr, "
                "tagger units (T/38400)."),
            Reg("tags", 64, Access.R, 0, "Tag FIFO head (TagWord); reading word 0 pops it."),
            Reg("tag_level", 16, Access.R, 0, "Tags waiting in the tag FIFO."),
            Reg("tagged", 32, Access.R, 0, "Clicks delivered by the merger (wrapping count)."),
        ]
        regs += [Reg(f"lost_{c}", 32, Access.R, 0, f"Hits of channel {c} lost to a full batch "
                     "buffer (wrapping count).") for c in range(self.cfg.channels)]
        return regs

    def elaborate(self, platform):
        cfg = self.cfg
        n, cb = cfg.channels, cfg.code_bits
        m = Module()
        entry = data.StructLayout({"mask": n, "lost": n, "coarse": COARSE_BITS, "slot": 32,
                                   "phase": 24, "codes": data.ArrayLayout(cb, n)})
        m.submodules.batch = batch = SyncFIFOBuffered(width=entry.size, depth=cfg.batch_depth)
        m.submodules.tagf = tagf = SyncFIFOBuffered(width=64, depth=cfg.tag_depth)

        coarse = Signal(COARSE_BITS, init=cfg.coarse_init)
        m.d.sync += coarse.eq(coarse + 1)
        pending = Signal(n)

        # Batch write: one entry per cycle with hits.
        w = entry(batch.w_data)
        m.d.comb += [w.mask.eq(self.hit), w.lost.eq(pending & self.hit), w.coarse.eq(coarse),
                     w.slot.eq(self.slot_edge), w.phase.eq(self.phase_edge),
                     w.codes.eq(self.code), batch.w_en.eq(self.hit.any())]
        with m.If(self.hit.any()):
            with m.If(batch.w_rdy):
                m.d.sync += pending.eq(pending & ~self.hit)
            with m.Else():
                m.d.sync += pending.eq(pending | self.hit)
                for c in range(n):
                    lost = getattr(self, f"lost_{c}")
                    with m.If(self.hit[c]):
                        m.d.sync += lost.eq(lost + 1)

        # Serializer.
        cur = Signal(entry)
        cur_mask = Signal(n)
        ch = Signal(range(max(n, 2)))
        for c in reversed(range(n)):
            with m.If(cur_mask[c]):
                m.d.comb += ch.eq(c)
        a_valid = cur_mask.any()

        st_valid = Signal()
        st = Signal(Click)
        m.d.comb += [self.o.valid.eq(st_valid & (tagf.w_rdy | ~self.tag_enable))]
        fire = self.o.valid & self.o.ready
        adv = ~st_valid | fire            # the output stage, and with it the pipeline, moves
        take = a_valid & adv
        bit = Signal(n)
        m.d.comb += bit.eq(Const(1, n) << ch)
        next_mask = Signal(n)
        m.d.comb += next_mask.eq(cur_mask & ~bit)
        with m.If(~take):
            m.d.comb += next_mask.eq(cur_mask)
        # next_mask == 0, written so that the stall (take) enters late: at most one bit left.
        last = (cur_mask & (cur_mask - 1)) == 0
        m.d.comb += batch.r_en.eq(((cur_mask == 0) | (take & last)) & batch.r_rdy)
        with m.If(batch.r_en):
            m.d.sync += [cur.eq(batch.r_data), cur_mask.eq(entry(batch.r_data).mask)]
        with m.Else():
            m.d.sync += cur_mask.eq(next_mask)

        # Stage 1 (sel) registers the chosen channel and its code; stage 2 (st) the
        # calibration table read addressed by stage 1. Both advance with the output.
        sel_valid = Signal()
        sel = Signal(Click)
        sel_code, sel_raw = Signal(cb), Signal()
        with m.If(adv):
            m.d.sync += [sel_valid.eq(take), sel.channel.eq(ch),
                         sel.flags.eq(Cat(Const(1, 1), self.raw, (cur.lost >> ch)[0])),
                         sel.coarse.eq(cur.coarse), sel.slot_edge.eq(cur.slot),
                         sel.phase_edge.eq(cur.phase), sel_raw.eq(self.raw),
                         sel_code.eq(cur.codes[ch])]
        m.submodules.cal = cal = Memory(shape=FINE_BITS, depth=n << cb,
                                        init=list(cfg.cal_init) if cfg.cal_init is not None
                                        else [])
        rp = cal.read_port(domain="sync")
        wp = cal.write_port()
        m.d.comb += [wp.addr.eq(self.cal_addr), wp.data.eq(self.cal_data),
                     wp.en.eq(self.cal_data_stb),
                     rp.addr.eq(Cat(sel_code, sel.channel)), rp.en.eq(adv)]
        # Stage lk waits for the table (a block RAM's output is slow): st registers it.
        lk_valid, lk_raw = Signal(), Signal()
        lk = Signal(Click)
        lk_code = Signal(cb)
        with m.If(adv):
            m.d.sync += [lk_valid.eq(sel_valid), lk.eq(sel), lk_raw.eq(sel_raw),
                         lk_code.eq(sel_code),
                         st_valid.eq(lk_valid), st.eq(lk),
                         st.fine.eq(Mux(lk_raw, lk_code, rp.data))]
        payload = st
        m.d.comb += self.o.payload.eq(payload)
        with m.If(fire):
            m.d.sync += self.tagged.eq(self.tagged + 1)

        # Tag FIFO.
        tw = TagWord(tagf.w_data)
        m.d.comb += [tw.channel.eq(payload.channel), tw.flags.eq(payload.flags),
                     tw.fine.eq(payload.fine), tw.coarse.eq(payload.coarse),
                     tagf.w_en.eq(fire & self.tag_enable)]
        head, head_valid = fifo_head(m, tagf, self.tags_rd, "tags")
        m.d.comb += [self.tags.eq(head), self.tag_level.eq(tagf.level + head_valid)]
        return m


@dataclasses.dataclass(frozen=True)
class TaggerConfig:
    """Build-time parameters of :class:`Tagger` (see its docstring)."""

    channels: int = 16
    code_bits: int = 10
    batch_depth: int = 8
    tag_depth: int = 512
    coarse_init: int = 0
    cal_init: tuple = None

    def __post_init__(self):
        if not isinstance(self.channels, int) or not 1 <= self.channels <= 32:
            raise ValueError(f"channels must be an int in 1..32, not {self.channels!r}")
        if not isinstance(self.code_bits, int) or not 1 <= self.code_bits <= 11:
            raise ValueError(f"code_bits must be an int in 1..11, not {self.code_bits!r}")
        for name in ("batch_depth", "tag_depth"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 2:
                raise ValueError(f"{name} must be an int >= 2, not {v!r}")
        if not 0 <= self.coarse_init < 1 << COARSE_BITS:
            raise ValueError(f"coarse_init must fit in {COARSE_BITS} bits, "
                             f"not {self.coarse_init!r}")
        if self.cal_init is not None:
            if len(self.cal_init) != self.channels << self.code_bits:
                raise ValueError(f"cal_init must have channels << code_bits = "
                                 f"{self.channels << self.code_bits} entries, "
                                 f"not {len(self.cal_init)!r}")
            object.__setattr__(self, "cal_init", tuple(int(x) for x in self.cal_init))
            if min(self.cal_init) < 0 or max(self.cal_init) >= 1 << FINE_BITS:
                raise ValueError(f"cal_init entries must fit in {FINE_BITS} bits")


def fifo_head(m, fifo, rd, name):
    """Register the head of ``fifo`` behind it (a block RAM's output is slow).

    Returns ``(data, valid)``: ``data`` is the head (0 when empty), ``rd`` pops it and the next
    head is there in the following cycle; ``fifo.r_en`` is driven here. Model:
    :class:`HeadModel`.
    """
    data = Signal(fifo.width, name=f"{name}_head")
    valid = Signal(name=f"{name}_head_valid")
    pop = rd & valid
    load = ~valid | pop
    m.d.comb += fifo.r_en.eq(load)
    with m.If(load & fifo.r_rdy):
        m.d.sync += [data.eq(fifo.r_data), valid.eq(1)]
    with m.Elif(pop):
        m.d.sync += [data.eq(0), valid.eq(0)]
    return data, valid


class HeadModel:
    """Cycle model of a ``SyncFIFOBuffered`` followed by :func:`fifo_head`."""

    def __init__(self, depth):
        self.fifo = FifoModel(depth)
        self.valid, self.data = False, 0

    @property
    def w_rdy(self):
        return self.fifo.w_rdy

    @property
    def level(self):
        return self.fifo.level + int(self.valid)

    def step(self, w_en, w_data, rd):
        """Advance one clock (``rd``: pop the head)."""
        pop = rd and self.valid
        load = (not self.valid) or pop
        if load and self.fifo.r_rdy:
            data, valid = self.fifo.r_data, True
        elif pop:
            data, valid = 0, False
        else:
            data, valid = self.data, self.valid
        done = self.fifo.step(w_en, w_data, load)
        self.data, self.valid = data, valid
        return done


class FifoModel:
    """Cycle model of ``amaranth.lib.fifo.SyncFIFOBuffered`` (inner FIFO + output register)."""

    def __init__(self, depth):
        self.inner_depth = depth - 1
        self.inner = collections.deque()
        self.r_rdy = False
        self.r_data = 0

    @property
    def w_rdy(self):
        return len(self.inner) != self.inner_depth

    @property
    def level(self):
        return len(self.inner) + int(self.r_rdy)

    def step(self, w_en, w_data, r_en):
        """Advance one clock with the given enables (``w_en`` must respect ``w_rdy``)."""
        do_write = w_en and self.w_rdy
        do_inner_read = bool(self.inner) and (not self.r_rdy or r_en)
        if do_inner_read:
            self.r_data = self.inner.popleft()
            self.r_rdy = True
        elif r_en:
            self.r_rdy = False
        if do_write:
            self.inner.append(w_data)
        return do_write


def tagger_model(hit, code, slot_edge, phase_edge, o_ready, tags_rd, cfg, raw=0, tag_enable=1):
    """Cycle model of :class:`Tagger`.

    Inputs per cycle: ``hit``/``code`` ``int[cycles, channels]``, ``slot_edge``/``phase_edge``
    ``int[cycles]``, ``o_ready`` and ``tags_rd`` ``bool[cycles]``. Returns a dict of per-cycle
    arrays ``o_valid``, ``o_payload`` (Click as int, 0 when not valid), ``tags`` (register
    value), ``tag_level``, ``tagged``, ``lost`` ``[cycles, channels]`` (values seen during the
    cycle, before its clock edge).
    """
    n, cb = cfg.channels, cfg.code_bits
    cycles = len(hit)
    table = np.zeros(n << cb, np.int64) if cfg.cal_init is None else np.array(cfg.cal_init)
    batch, tagf = FifoModel(cfg.batch_depth), HeadModel(cfg.tag_depth)
    coarse, pending = cfg.coarse_init, np.zeros(n, bool)
    lost = np.zeros(n, np.int64)
    cur_mask, cur = 0, None
    st_valid, st = False, None
    sel_valid, sel = False, None
    lk_valid, lk = False, None
    tagged = 0
    out = {k: np.zeros(cycles, np.int64) for k in ("o_valid", "tag_level", "tagged")}
    out["o_payload"] = np.zeros(cycles, object)
    out["tags"] = np.zeros(cycles, np.uint64)
    out["lost"] = np.zeros((cycles, n), np.int64)
    for k in range(cycles):
        o_valid = st_valid and (tagf.w_rdy or not tag_enable)
        payload = _click_int(st) if st_valid else 0
        out["o_valid"][k] = o_valid
        out["o_payload"][k] = payload if o_valid else 0
        out["tags"][k] = tagf.data
        out["tag_level"][k] = tagf.level
        out["tagged"][k] = tagged
        out["lost"][k] = lost
        fire = o_valid and bool(o_ready[k])
        adv = (not st_valid) or fire
        take = cur_mask != 0 and adv
        ch = (cur_mask & -cur_mask).bit_length() - 1 if cur_mask else 0
        next_mask = cur_mask & ~(1 << ch) if take else cur_mask
        b_rd = next_mask == 0 and batch.r_rdy
        h = np.asarray(hit[k]).astype(bool)
        b_wr = bool(h.any())
        b_data = None
        if b_wr:
            if batch.w_rdy:
                b_data = dict(mask=_bits(h), lost=_bits(pending & h), coarse=coarse,
                              slot=int(slot_edge[k]), phase=int(phase_edge[k]),
                              codes=[int(x) for x in code[k]])
                pending = pending & ~h
            else:
                pending = pending | h
                lost = (lost + h) & 0xFFFF_FFFF
        # Stages sel, lk (table read) and st (the output) registers.
        if adv:
            st_valid, st = lk_valid, lk
            lk_valid, lk = sel_valid, sel
            sel_valid = take
            if take:
                c = cur["codes"][ch]
                sel = dict(channel=ch, flags=1 | (raw << 1) | (((cur["lost"] >> ch) & 1) << 2),
                          coarse=cur["coarse"], slot=cur["slot"], phase=cur["phase"],
                          fine=c if raw else int(table[(ch << cb) | c]))
        if fire and tag_enable:
            tagf.step(True, encode_tag(*_tag_parts(payload)), bool(tags_rd[k]))
        else:
            tagf.step(False, 0, bool(tags_rd[k]))
        if fire:
            tagged = (tagged + 1) & 0xFFFF_FFFF
        if b_rd:
            cur = batch.r_data
            cur_mask = cur["mask"]
        else:
            cur_mask = next_mask
        batch.step(b_data is not None, b_data, b_rd)
        coarse = (coarse + 1) % (1 << COARSE_BITS)
    return out


def _bits(boolarray):
    return int(sum(1 << i for i, b in enumerate(boolarray) if b))


def _click_int(st):
    return Click.const({"channel": st["channel"], "flags": st["flags"], "fine": st["fine"],
                        "coarse": st["coarse"], "slot_edge": st["slot"],
                        "phase_edge": st["phase"]}).as_value().value


def _tag_parts(payload):
    lay = data.Layout.cast(Click)
    return tuple((payload >> lay[f].offset) & ((1 << lay[f].width) - 1)
                 for f in ("channel", "flags", "fine", "coarse"))

