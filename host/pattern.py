"""Host side of the pattern generator: configuration, register writes, slot regeneration.

The gateware file :mod:`combkey.gateware.pattern.generator` defines the slot/IV rule, the
mapper, class codes and registers; this module is a thin host API over its model, with a numba
fast path that is tested bit-exact against the numpy model and the simulated hardware.

Entry points
------------
* :class:`PatternConfig` (frozen): protocol ``"sns"`` or ``"mdi"``, probabilities, threshold
  resolution, M phase slices, lanes, frame length, reference-frame schedule, LUTs, IV tag.
  :meth:`PatternConfig.from_dict` validates (errors name the field);
  :meth:`PatternConfig.register_values` gives the writes ``[(register, value), ...]`` (names
  relative to the channel, ``ctrl`` last since it starts the channel);
  :meth:`PatternConfig.realised` gives the exact class probabilities the thresholds realise.
* :func:`regenerate` ``(cfg, key, first_slot, count)`` and :func:`regenerate_slots`
  ``(cfg, key, slots)``: numpy structured arrays of dtype :data:`SLOT_DTYPE` with fields
  ``slot`` (uint64), ``cls`` (uint8), ``basis``, ``bit``, ``phase_slice``, ``im_code``,
  ``pm_code``. ``key`` is the 10-byte eSTREAM-order key string (see
  :mod:`combkey.gateware.pattern.trivium`).

Class codes (``cls``): SNS 0 ``zn`` (Z window, not sending), 1 ``zs`` (Z window, sending
mu_z), 2 ``x0`` (X window, mu_0 = 0), 3 ``x1``, 4 ``x2``; MDI 0 ``z``, 1 ``y``, 2 ``x``,
3 ``o``; both 5 ``ref`` (reference slot), 6 ``idle`` (QRNG underflow, hardware only).
``basis``: 0 = Z (SNS Z window, MDI z), 1 = X; ``bit``: SNS 1 iff ``zs``, MDI the random bit.

Probabilities become thresholds ``round(p * 2**prob_bits)`` (SNS: ``thr0`` = p_z,
``thr1`` = eps, ``thr2``/``thr3`` = cumulative p_x0, p_x0 + p_x1 within the X window; MDI:
cumulative p_z, p_z + p_y, p_z + p_y + p_x); :meth:`PatternConfig.realised` reports the exact
values, which differ from the requested ones by at most 2**-(prob_bits+1) per threshold.
"""
import dataclasses
import math

import numba
import numpy as np

from combkey.gateware.pattern.generator import (
    CLASS_NAMES,
    SLOT_DTYPE,
    GeneratorParams,
    PatternRegs,
    map_slots,
)
from combkey.gateware.pattern.trivium import INIT_STEPS, key_to_int

__all__ = ["PatternConfig", "regenerate", "regenerate_slots", "SLOT_DTYPE", "CLASS_NAMES",
           "default_luts", "bench"]


def default_luts(protocol, phase_slices=16, im_bits=16, pm_bits=16):
    """Return placeholder LUTs: IM code = index, PM code = phase 2*pi*(slice/M + bit/2).

    The PM word is the phase in units of 2*pi / 2**pm_bits; real DAC words come from the
    modulator calibration.
    """
    im = tuple(i & ((1 << im_bits) - 1) for i in range(16))
    full = 1 << pm_bits
    pm = tuple(((s * full) // phase_slices + b * (full // 2)) % full
               for b in range(2) for s in range(phase_slices))
    del protocol
    return im, pm


_FIELDS_COMMON = {"protocol", "prob_bits", "phase_slices", "lanes", "frame_len", "n_q", "n_r",
                  "ref_phase_start", "ref_phase_step", "iv_tag", "frame0", "source", "im_lut",
                  "pm_lut", "im_bits", "pm_bits"}
_FIELDS_SNS = {"p_z", "eps", "p_x0", "p_x1", "p_x2"}
_FIELDS_MDI = {"p_z", "p_y", "p_x", "p_o"}


@dataclasses.dataclass(frozen=True)
class PatternConfig:
    """Configuration of one channel's pattern generator (see the module docstring).

    Probabilities: SNS uses ``p_z`` (Z window), ``eps`` (send in a Z window), and ``p_x0``,
    ``p_x1``, ``p_x2`` (intensity within an X window, summing to 1); MDI uses ``p_z``,
    ``p_y``, ``p_x``, ``p_o`` (summing to 1). ``n_r = 0`` disables reference slots.
    ``im_lut`` (16 words) and ``pm_lut`` (2 * phase_slices words) default to
    :func:`default_luts`.
    """

    protocol: str = "sns"
    p_z: float = 0.5
    eps: float = 0.5
    p_x0: float = 0.3
    p_x1: float = 0.5
    p_x2: float = 0.2
    p_y: float = 0.0
    p_x: float = 0.0
    p_o: float = 0.0
    prob_bits: int = 16
    phase_slices: int = 16
    lanes: int = 1
    frame_len: int = 65536
    n_q: int = 65536
    n_r: int = 0
    ref_phase_start: int = 0
    ref_phase_step: int = 0
    iv_tag: int = 0
    frame0: int = 0
    source: str = "trivium"
    im_bits: int = 16
    pm_bits: int = 16
    im_lut: tuple = None
    pm_lut: tuple = None

    def __post_init__(self):
        if self.protocol not in ("sns", "mdi"):
            raise ValueError(f"protocol must be 'sns' or 'mdi', not {self.protocol!r}")
        if self.source not in ("trivium", "qrng"):
            raise ValueError(f"source must be 'trivium' or 'qrng', not {self.source!r}")
        M = self.phase_slices
        if isinstance(M, bool) or not isinstance(M, int) or M < 1 or M > 256 or M & (M - 1):
            raise ValueError(f"phase_slices must be a power of two in 1..256, not {M!r}")
        names = ("p_z", "eps", "p_x0", "p_x1", "p_x2") if self.protocol == "sns" else \
            ("p_z", "p_y", "p_x", "p_o")
        for n in names:
            v = getattr(self, n)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ValueError(f"{n} must be a probability in [0, 1], not {v!r}")
        group = ("p_x0", "p_x1", "p_x2") if self.protocol == "sns" else names
        total = sum(getattr(self, n) for n in group)
        if abs(total - 1) > 1e-9:
            raise ValueError(f"{' + '.join(group)} must sum to 1, not {total!r}")
        im, pm = default_luts(self.protocol, M, self.im_bits, self.pm_bits) \
            if (self.im_lut is None or self.pm_lut is None) else (None, None)
        if self.im_lut is None:
            object.__setattr__(self, "im_lut", im)
        if self.pm_lut is None:
            object.__setattr__(self, "pm_lut", pm)
        object.__setattr__(self, "im_lut", tuple(int(v) for v in self.im_lut))
        object.__setattr__(self, "pm_lut", tuple(int(v) for v in self.pm_lut))
        self.regs().check(self.params())     # named errors for the register-level fields

    @classmethod
    def from_dict(cls, d):
        """Build from plain data (JSON), rejecting unknown fields by name."""
        if not isinstance(d, dict):
            raise TypeError(f"pattern config must be a dict, not {d!r}")
        proto = d.get("protocol", "sns")
        allowed = _FIELDS_COMMON | (_FIELDS_SNS if proto == "sns" else _FIELDS_MDI)
        for k in d:
            if k not in allowed:
                raise ValueError(f"unknown pattern config field {k!r} for protocol {proto!r}")
        kw = dict(d)
        if proto == "mdi":
            kw.setdefault("p_x0", 0.0)
            kw.setdefault("p_x1", 0.0)
            kw.setdefault("p_x2", 0.0)
            kw.setdefault("eps", 0.0)
        for k in ("im_lut", "pm_lut"):
            if k in kw and kw[k] is not None:
                kw[k] = tuple(kw[k])
        return cls(**kw)

    # -------------------------------------------------------------- derived
    @property
    def phase_bits(self):
        return self.phase_slices.bit_length() - 1

    def params(self):
        """The gateware elaboration parameters this configuration needs."""
        return GeneratorParams(lanes=self.lanes, prob_bits=self.prob_bits,
                               phase_bits=self.phase_bits, im_bits=self.im_bits,
                               pm_bits=self.pm_bits)

    def thresholds(self):
        """Return ``(thr0, thr1, thr2, thr3)`` in units of ``2**-prob_bits``."""
        one = 1 << self.prob_bits

        def q(p):
            return min(one, max(0, int(math.floor(p * one + 0.5))))
        if self.protocol == "sns":
            return (q(self.p_z), q(self.eps), q(self.p_x0), q(self.p_x0 + self.p_x1))
        c0 = q(self.p_z)
        c1 = max(c0, q(self.p_z + self.p_y))
        c2 = max(c1, q(self.p_z + self.p_y + self.p_x))
        return (c0, c1, c2, 0)

    def realised(self):
        """Exact class probabilities of a quantum slot realised by the thresholds (dict)."""
        one = 1 << self.prob_bits
        t0, t1, t2, t3 = self.thresholds()
        if self.protocol == "sns":
            pz, pe = t0 / one, t1 / one
            return {"zn": pz * (1 - pe), "zs": pz * pe, "x0": (1 - pz) * t2 / one,
                    "x1": (1 - pz) * (t3 - t2) / one, "x2": (1 - pz) * (one - t3) / one}
        return {"z": t0 / one, "y": (t1 - t0) / one, "x": (t2 - t1) / one,
                "o": (one - t2) / one}

    def regs(self):
        """The gateware run-time register values (:class:`PatternRegs`)."""
        return PatternRegs(
            mdi=self.protocol == "mdi", thr=self.thresholds(), frame_len=self.frame_len,
            n_q=self.n_q, n_r=self.n_r, ref_phase_start=self.ref_phase_start,
            ref_phase_step=self.ref_phase_step, iv_tag=self.iv_tag, frame0=self.frame0,
            im_lut=self.im_lut, pm_lut=self.pm_lut, qrng=self.source == "qrng")

    def register_values(self, key=None, run=True):
        """Register writes ``[(name, value), ...]`` configuring the channel (``ctrl`` last).

        ``key`` (10-byte eSTREAM string) adds the ``key_lo``/``key_hi`` writes.
        """
        k = None if key is None else key_to_int(key)
        return self.regs().writes(self.params(), k, run=run)


# ------------------------------------------------------------------------------------------
# numba fast path (same algorithm as trivium.trivium_words + generator.map_slots)
# ------------------------------------------------------------------------------------------
_U = np.uint64


@numba.njit(inline="always")
def _lag(w1, w2, d):
    return (w1 << _U(d - 64)) | (w2 >> _U(128 - d))


@numba.njit(cache=True)
def _hist(lo, hi, length):
    w1 = _U(0)
    w2 = _U(0)
    for k in range(1, length + 1):
        if k <= 64:
            b = (lo >> _U(k - 1)) & _U(1)
        else:
            b = (hi >> _U(k - 65)) & _U(1)
        n = 1 - k
        if n >= -63:
            w1 |= b << _U(n + 63)
        else:
            w2 |= b << _U(n + 127)
    return w1, w2


@numba.njit(cache=True)
def _keystream(klo, khi, vlo, vhi, out):
    """Fill ``out`` (uint64) with keystream words after the 1152 initialisation steps."""
    a1, a2 = _hist(klo, khi, 80)
    b1, b2 = _hist(vlo, vhi, 80)
    c1 = _U(0)
    c2 = _U((1 << 19) | (1 << 18) | (1 << 17))
    skip = INIT_STEPS // 64
    n = out.shape[0]
    for m in range(skip + n):
        t1 = _lag(a1, a2, 66) ^ _lag(a1, a2, 93)
        t2 = _lag(b1, b2, 69) ^ _lag(b1, b2, 84)
        t3 = _lag(c1, c2, 66) ^ _lag(c1, c2, 111)
        if m >= skip:
            out[m - skip] = t1 ^ t2 ^ t3
        na = t3 ^ (_lag(c1, c2, 109) & _lag(c1, c2, 110)) ^ _lag(a1, a2, 69)
        nb = t1 ^ (_lag(a1, a2, 91) & _lag(a1, a2, 92)) ^ _lag(b1, b2, 78)
        nc = t2 ^ (_lag(b1, b2, 82) & _lag(b1, b2, 83)) ^ _lag(c1, c2, 87)
        a2 = a1
        a1 = na
        b2 = b1
        b1 = nb
        c2 = c1
        c1 = nc


@numba.njit(cache=True)
def _extract(words, t, S):
    bit = t * S
    wi = bit >> 6
    sh = _U(bit & 63)
    # branch-free: (x << 1) << (63 - sh) is x << (64 - sh) for sh > 0 and 0 for sh = 0
    v = (words[wi] >> sh) | ((words[wi + 1] << _U(1)) << (_U(63) - sh))
    return v & _U((1 << S) - 1)


@numba.njit(cache=True)
def _raw_sorted(klo, khi, tag_lo, tag_hi, F, L, S, slots, order, raw):
    """Raw words of arbitrary slots; ``order`` sorts them by (frame, lane, step)."""
    n = order.shape[0]
    nmax = (F // L) * S // 64 + 2
    words = np.empty(nmax, dtype=np.uint64)
    i = 0
    while i < n:
        s0 = slots[order[i]]
        k = s0 // _U(F)
        j = (s0 % _U(F)) % _U(L)
        # the group runs while (frame, lane) is unchanged; find its last step
        e = i
        while e + 1 < n:
            s1 = slots[order[e + 1]]
            if s1 // _U(F) != k or (s1 % _U(F)) % _U(L) != j:
                break
            e += 1
        t_hi = np.int64((slots[order[e]] % _U(F)) // _U(L))
        nw = (t_hi + 1) * S // 64 + 2
        vlo = (k & _U((1 << 48) - 1)) | (j << _U(48)) | (tag_lo << _U(52))
        _keystream(klo, khi, vlo, tag_hi, words[:nw])
        for q in range(i, e + 1):
            s = slots[order[q]]
            t = np.int64((s % _U(F)) // _U(L))
            raw[order[q]] = _extract(words, t, S)
        i = e + 1


@numba.njit(inline="always")
def _map_one(i, w, pos, R, m, mdi, t0, t1, t2, t3, n_q, n_r, rp0, rstep, im_lut, pm_lut,
             cls_o, basis_o, bit_o, ph_o, im_o, pm_o):
    """Map raw word ``w`` into record ``i``; ``pos`` is the slot's offset in its scheduler
    period (ignored when ``n_r == 0``)."""
    mask = _U((1 << R) - 1)
    pmask = (1 << m) - 1
    u1 = np.int64(w & mask)
    u2 = np.int64((w >> _U(R)) & mask)
    rbit = np.int64((w >> _U(2 * R)) & _U(1))
    ph = np.int64((w >> _U(2 * R + 1)) & _U(pmask))
    # Branch-free: the compares are random, so branches would mispredict about half the
    # time. Sums of compares equal the threshold cascades because the thresholds are
    # ordered (MDI thr0 <= thr1 <= thr2, SNS thr2 <= thr3; PatternRegs.check enforces it).
    if mdi:
        c = np.int64(u1 >= t0) + np.int64(u1 >= t1) + np.int64(u1 >= t2)
        bit = rbit
        basis = np.int64(c >= 1)
    else:
        z = np.int64(u1 < t0)
        zs = np.int64(u2 < t1)
        cx = 2 + np.int64(u2 >= t2) + np.int64(u2 >= t3)
        c = cx + z * (zs - cx)
        bit = z & zs
        basis = 1 - z
    if n_r > 0:
        if pos >= n_q:
            c = 5
            basis = 1
            bit = 0
            ph = (rp0 + (pos - n_q) * rstep) & pmask
    cls_o[i] = c
    basis_o[i] = basis
    bit_o[i] = bit
    ph_o[i] = ph
    im_o[i] = im_lut[(c << 1) | bit]
    pm_o[i] = pm_lut[(bit << m) | ph]


@numba.njit(cache=True)
def _map(raw, slots, R, m, mdi, t0, t1, t2, t3, F, n_q, n_r, rp0, rstep, im_lut, pm_lut,
         cls_o, basis_o, bit_o, ph_o, im_o, pm_o):
    period = _U(n_q + n_r)
    for i in range(raw.shape[0]):
        pos = np.int64((slots[i] % _U(F)) % period) if n_r > 0 else 0
        _map_one(i, raw[i], pos, R, m, mdi, t0, t1, t2, t3, n_q, n_r, rp0, rstep,
                 im_lut, pm_lut, cls_o, basis_o, bit_o, ph_o, im_o, pm_o)


@numba.njit(cache=True)
def _regen_range(klo, khi, tag_lo, tag_hi, L, S, first, count, R, m, mdi, t0, t1, t2, t3, F,
                 n_q, n_r, rp0, rstep, im_lut, pm_lut,
                 slot_o, cls_o, basis_o, bit_o, ph_o, im_o, pm_o):
    """Fused keystream, extraction and mapping for slots ``first .. first+count-1``."""
    last = first + count - 1
    nmax = (F // L) * S // 64 + 2
    words = np.empty(nmax, dtype=np.uint64)
    for k in range(first // F, last // F + 1):
        o_lo = max(first, k * F) - k * F
        o_hi = min(last, k * F + F - 1) - k * F
        for j in range(L):
            t_lo = (o_lo - j + L - 1) // L if o_lo > j else 0
            t_hi = (o_hi - j) // L if o_hi >= j else -1
            if t_hi < t_lo:
                continue
            nw = (t_hi + 1) * S // 64 + 2
            vlo = _U(k & ((1 << 48) - 1)) | (_U(j) << _U(48)) | (tag_lo << _U(52))
            _keystream(klo, khi, vlo, tag_hi, words[:nw])
            period = n_q + n_r
            pos = (t_lo * L + j) % period       # offset in the scheduler period, stepped by L
            for t in range(t_lo, t_hi + 1):
                s = k * F + t * L + j
                i = s - first
                slot_o[i] = s
                _map_one(i, _extract(words, t, S), pos, R, m, mdi, t0, t1, t2, t3, n_q,
                         n_r, rp0, rstep, im_lut, pm_lut, cls_o, basis_o, bit_o, ph_o, im_o,
                         pm_o)
                pos += L
                if pos >= period:
                    pos -= period


def _key_parts(cfg, key):
    k = key_to_int(key)
    tag = cfg.iv_tag
    return (_U(k & ((1 << 64) - 1)), _U(k >> 64), _U(tag & ((1 << 12) - 1)), _U(tag >> 12))


def _finish(cfg, raw, slots):
    n = raw.shape[0]
    out = np.empty(n, dtype=SLOT_DTYPE)
    t0, t1, t2, t3 = cfg.thresholds()
    # the kernel writes straight into the (strided) field views of the record array
    _map(raw, slots, cfg.prob_bits, cfg.phase_bits, cfg.protocol == "mdi", t0, t1, t2, t3,
         cfg.frame_len, cfg.n_q, cfg.n_r, cfg.ref_phase_start, cfg.ref_phase_step,
         np.asarray(cfg.im_lut, np.uint16), np.asarray(cfg.pm_lut, np.uint16),
         out["cls"], out["basis"], out["bit"], out["phase_slice"], out["im_code"],
         out["pm_code"])
    out["slot"] = slots
    return out


def _check_cfg(cfg):
    if not isinstance(cfg, PatternConfig):
        raise TypeError(f"cfg must be a PatternConfig, not {cfg!r}")
    if cfg.source != "trivium":
        raise ValueError("cfg.source must be 'trivium' to regenerate from a key; QRNG settings "
                         "follow from the words the host streamed (map_slots)")


def regenerate(cfg: PatternConfig, key: bytes, first_slot: int, count: int) -> np.ndarray:
    """Settings of slots ``first_slot .. first_slot + count - 1`` (SLOT_DTYPE array)."""
    _check_cfg(cfg)
    for name, v in (("first_slot", first_slot), ("count", count)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{name} must be a non-negative int, not {v!r}")
    last_frame = (int(first_slot) + int(count)) // cfg.frame_len
    if last_frame >> 48:
        raise ValueError(f"first_slot + count must stay below frame 2**48, not {last_frame}")
    klo, khi, tlo, thi = _key_parts(cfg, key)
    out = np.empty(int(count), dtype=SLOT_DTYPE)
    if count:
        t0, t1, t2, t3 = cfg.thresholds()
        _regen_range(klo, khi, tlo, thi, cfg.lanes, cfg.params().slot_bits, int(first_slot),
                     int(count), cfg.prob_bits, cfg.phase_bits, cfg.protocol == "mdi",
                     t0, t1, t2, t3, cfg.frame_len, cfg.n_q, cfg.n_r, cfg.ref_phase_start,
                     cfg.ref_phase_step, np.asarray(cfg.im_lut, np.uint16),
                     np.asarray(cfg.pm_lut, np.uint16), out["slot"], out["cls"],
                     out["basis"], out["bit"], out["phase_slice"], out["im_code"],
                     out["pm_code"])
    return out


def regenerate_slots(cfg: PatternConfig, key: bytes, slots: np.ndarray) -> np.ndarray:
    """Settings of the given slot indices, in the given order (SLOT_DTYPE array)."""
    _check_cfg(cfg)
    slots = np.asarray(slots)
    if slots.ndim != 1 or (slots.size and (slots.dtype.kind not in "ui")):
        raise ValueError(f"slots must be a 1-D integer array, not {slots.dtype}{slots.shape}")
    if slots.size and slots.dtype.kind == "i" and slots.min() < 0:
        raise ValueError("slots must be non-negative")
    slots = slots.astype(np.uint64)
    if slots.size and int(slots.max()) // cfg.frame_len >> 48:
        raise ValueError("slots must stay below frame 2**48")
    klo, khi, tlo, thi = _key_parts(cfg, key)
    raw = np.zeros(slots.size, dtype=np.uint64)
    if slots.size:
        F, L = np.uint64(cfg.frame_len), np.uint64(cfg.lanes)
        order = np.lexsort(((slots % F) // L, (slots % F) % L, slots // F))
        _raw_sorted(klo, khi, tlo, thi, cfg.frame_len, cfg.lanes, cfg.params().slot_bits,
                    slots, order.astype(np.int64), raw)
    return _finish(cfg, raw, slots)


def model_regenerate(cfg, key, slots):
    """The gateware numpy model for the same slots (slow reference for tests)."""
    from combkey.gateware.pattern.generator import slot_raw_words
    slots = np.asarray(slots, dtype=np.uint64)
    raw = slot_raw_words(cfg.params(), cfg.regs(), key_to_int(key), slots)
    return map_slots(cfg.params(), cfg.regs(), raw, slots)


def bench(quick=False):
    """``combkey bench pattern``: see :mod:`combkey.pattern_bench`."""
    from combkey.pattern_bench import run
    return run(quick=quick)
