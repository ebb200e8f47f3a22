"""Session simulator: what a key session on a WDM TF/MDI link produces, per channel.

Interface
---------
``SimLink``: frozen dataclass of the physics of one channel (symmetric two-arm link):

* ``protocol``: ``"sns"`` or ``"mdi"``;
* ``eta_arm``: per-arm transmittance including the detector efficiency (0, 1];
* ``p_noise``: noise-click probability per detector per window (dark counts plus crosstalk /
  Raman counts: ``DCR * window + crosstalk_cps * window``), in [0, 0.5);
* ``misalignment``: SNS: probability that a single click is registered in the other detector
  (optical misalignment of the interferometer, applied to every effective event); MDI: Z-basis
  ``e_d``; ``misalignment_x``: MDI X-basis ``e_d``;
* ``class_probs`` / ``class_mu``: per-user class probabilities and mean photon numbers, keyed by
  the class names :data:`SNS_CLASSES` (``zn zs x0 x1 x2``) or :data:`MDI_CLASSES`
  (``o x y z``), the same strings as :mod:`combkey.keyrate`;
* ``phase_slices`` ``M``: the phase modulator's random phase is ``2 pi k / M``, k uniform;
* ``postselect_fraction``: SNS X-window post-selection acceptance ``Delta / pi`` (see
  :func:`phase_pass`);
* ``phase``: :class:`PhaseModel` (residual of the phase compensation and Charlie's estimate);
* ``clock_hz``: slot rate (used for the reference period in slots).

``PhaseModel(drift_rad_per_ms=4.1, ref_period_s=1e-5, loop_residual_rad=0.05,
estimate_noise_rad=0.05)``: the relative phase of Alice's and Bob's fields at Charlie drifts at
up to ``drift_rad_per_ms`` (seed 000 reports < 4.1 rad/ms); the compensation loop corrects it once
per reference period, leaving a residual ``r``, modelled as Gaussian with standard deviation
``sigma_r = sqrt((drift * period)**2 / 12 + loop_residual**2)`` (a sawtooth of the uncorrected
drift within a period, plus loop noise). Charlie reports an estimate ``psi = r + n``,
``n ~ N(0, estimate_noise_rad)``. In exact mode ``r`` and ``psi`` are drawn once per reference
period; fast mode draws them independently per window (the marginal per window is the same;
correlations between windows of one period are neglected, which does not change any expected
count).

Click model (threshold detectors D0, D1 behind a 50:50 beam splitter, SNS): field amplitudes
``sqrt(eta mu_a)`` and ``sqrt(eta mu_b) e^{i phi}`` with ``phi = 2 pi (k_a - k_b) / M + r``;
port intensities ``(I_a + I_b +/- 2 sqrt(I_a I_b) cos phi) / 2``; a detector does not click with
probability ``(1 - p_noise) e^{-I}`` (:func:`sns_clicks`). An effective event is exactly one
click; it is then swapped to the other detector with probability ``misalignment``.
MDI: a pair of classes succeeds (Charlie announces a |Psi-> projection) with the gain ``Q`` of
``keyrate-notes.md`` section 4.2 (Xu, Curty, Qi, Lo, NJP 15, 113007 (2013)), and is a bit error
(equal bits after Bob's flip, i.e. equal raw bits) with ``EQ / Q`` (:func:`mdi_gain`); Z gain when
both users are in ``z`` or one is in ``z`` and the other vacuum, X gain otherwise. Exact mode
applies this per slot as ``P(success | bits differ) = 2 (Q - EQ)``, ``P(success | bits equal) =
2 EQ``, which has the same distribution when bits are uniform.

``simulate_fast(link, pulses, rng, *, channel=0) -> ChannelRecord`` (class-wise sampling:
multinomial class-pair counts, binomial effective events per class pair, attributes of each event
from the conditional distribution by rejection sampling, slot positions uniform without
replacement); ``simulate_exact(link, pulses, rng, settings_a, settings_b, *, channel=0,
chunk=1 << 16) -> ChannelRecord`` (slot by slot: ``settings_X(first_slot, count)`` returns a
dict with ``cls`` (index into the protocol's class tuple, or -1 for a non-quantum slot such as a
reference slot), ``bit`` and ``phase_slice`` arrays, e.g. regenerated from the transmitter's pattern
key; :func:`iid_settings` gives an i.i.d. stand-in).

``ChannelRecord``: ``protocol``, ``channel``, ``pulses`` (quantum windows), ``sent`` (dict
``(a, b) -> int`` windows per class pair), ``x11_pass_sent`` (SNS: ``(x1, x1)`` windows whose
phases pass :func:`phase_pass` with Charlie's estimate), ``phase_slices`` (M), ``events``
(structured array :data:`EVENT_DTYPE`, sorted by slot, one row per announced effective
event: ``slot``, ``a_cls``, ``b_cls``, ``a_bit``, ``b_bit``, ``a_phase``, ``b_phase``,
``outcome`` (SNS: 0 = only D0, 1 = only D1; MDI: the Bell-state outcome label 0/1, both
|Psi->), ``psi`` (Charlie's phase estimate, rad)). Alice's host sees the ``a_*`` columns,
Bob's the ``b_*`` columns, both see the announcement (``slot``, ``outcome``, ``psi``).
SNS bits: Alice 1 = sent (``zs``), Bob 0 = sent.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtr

__all__ = ["SNS_CLASSES", "MDI_CLASSES", "EVENT_DTYPE", "PhaseModel", "SimLink",
           "ChannelRecord", "sns_clicks", "mdi_gain", "phase_pass", "simulate_fast",
           "simulate_exact", "iid_settings", "expected_sent"]

SNS_CLASSES = ("zn", "zs", "x0", "x1", "x2")
MDI_CLASSES = ("o", "x", "y", "z")
EVENT_DTYPE = np.dtype([("slot", np.int64), ("a_cls", np.int8), ("b_cls", np.int8),
                        ("a_bit", np.uint8), ("b_bit", np.uint8), ("a_phase", np.uint16),
                        ("b_phase", np.uint16), ("outcome", np.uint8), ("psi", np.float32)])

_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(40)   # nodes for E[g(N(0,1))]
_GH_W = _GH_W / _GH_W.sum()


@dataclass(frozen=True)
class PhaseModel:
    """Residual phase of the compensation loop and Charlie's estimate (module docstring)."""

    drift_rad_per_ms: float = 4.1
    ref_period_s: float = 1e-5
    loop_residual_rad: float = 0.05
    estimate_noise_rad: float = 0.05

    def __post_init__(self):
        for name in ("drift_rad_per_ms", "loop_residual_rad", "estimate_noise_rad"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a number >= 0, not {v!r}")
        if not (isinstance(self.ref_period_s, (int, float)) and self.ref_period_s > 0):
            raise ValueError(f"ref_period_s must be > 0, not {self.ref_period_s!r}")

    @property
    def sigma_residual(self):
        """Standard deviation of the residual phase ``r`` (rad)."""
        d = self.drift_rad_per_ms * 1e3 * self.ref_period_s
        return math.sqrt(d * d / 12 + self.loop_residual_rad ** 2)


@dataclass(frozen=True)
class SimLink:
    """Physics of one channel (module docstring)."""

    protocol: str
    eta_arm: float
    p_noise: float
    misalignment: float
    class_probs: dict
    class_mu: dict
    misalignment_x: float | None = None
    phase_slices: int = 16
    postselect_fraction: float = 0.1
    phase: PhaseModel = field(default_factory=PhaseModel)
    clock_hz: float = 1e9

    def __post_init__(self):
        if self.protocol not in ("sns", "mdi"):
            raise ValueError(f"protocol must be 'sns' or 'mdi', not {self.protocol!r}")
        if not 0 < self.eta_arm <= 1:
            raise ValueError(f"eta_arm must be in (0, 1], not {self.eta_arm!r}")
        if not 0 <= self.p_noise < 0.5:
            raise ValueError(f"p_noise must be in [0, 0.5), not {self.p_noise!r}")
        if not 0 <= self.misalignment < 0.5:
            raise ValueError(f"misalignment must be in [0, 0.5), not {self.misalignment!r}")
        names = self.classes
        if tuple(sorted(self.class_probs)) != tuple(sorted(names)):
            raise ValueError(f"class_probs must have the keys {names!r}, not "
                             f"{tuple(self.class_probs)!r}")
        if tuple(sorted(self.class_mu)) != tuple(sorted(names)):
            raise ValueError(f"class_mu must have the keys {names!r}, not "
                             f"{tuple(self.class_mu)!r}")
        total = sum(self.class_probs.values())
        if abs(total - 1) > 1e-9 or min(self.class_probs.values()) < 0:
            raise ValueError(f"class_probs must be non-negative and sum to 1, not {total!r}")
        if not (isinstance(self.phase_slices, int) and self.phase_slices >= 1):
            raise ValueError(f"phase_slices must be a positive integer, "
                             f"not {self.phase_slices!r}")
        if not 0 < self.postselect_fraction <= 1:
            raise ValueError(f"postselect_fraction must be in (0, 1], "
                             f"not {self.postselect_fraction!r}")

    @property
    def classes(self):
        """Class names of the protocol, in code order."""
        return SNS_CLASSES if self.protocol == "sns" else MDI_CLASSES

    @property
    def e_x(self):
        """MDI X-basis misalignment."""
        return self.misalignment if self.misalignment_x is None else self.misalignment_x

    @property
    def ref_period_slots(self):
        """Reference period in slots (at least 1)."""
        return max(1, int(round(self.phase.ref_period_s * self.clock_hz)))


@dataclass
class ChannelRecord:
    """What one channel of a session produced (module docstring)."""

    protocol: str
    channel: int
    pulses: int
    sent: dict
    events: np.ndarray
    x11_pass_sent: int = 0
    mode: str = "fast"
    phase_slices: int = 16


# ---------------------------------------------------------------------------- physics
def sns_clicks(eta, mu_a, mu_b, phi, p_noise):
    """Return ``(only D0, only D1)`` probabilities (vectorised; no misalignment)."""
    ia = eta * np.asarray(mu_a, dtype=float)
    ib = eta * np.asarray(mu_b, dtype=float)
    cross = 2 * np.sqrt(ia * ib) * np.cos(phi)
    q = 1 - p_noise
    n0 = q * np.exp(-np.maximum((ia + ib + cross) / 2, 0))
    n1 = q * np.exp(-np.maximum((ia + ib - cross) / 2, 0))
    return (1 - n0) * n1, (1 - n1) * n0


def _i0(z):
    from scipy.special import i0e
    z = np.asarray(z, dtype=float)
    return i0e(z) * np.exp(z)


def mdi_gain(eta, ka, kb, p_noise, e_z, e_x, basis):
    """Return ``(Q, EQ)`` of a class pair (notes 4.2), ``basis`` ``"Z"`` or ``"X"``."""
    ea, eb = eta * ka, eta * kb
    q = 1 - p_noise
    mu = ea + eb
    x = math.sqrt(ea * eb) / 2
    if basis == "Z":
        qc = 2 * q * q * math.exp(-mu / 2) * (1 - q * math.exp(-ea / 2)) * (
            1 - q * math.exp(-eb / 2))
        qe = 2 * p_noise * q * q * math.exp(-mu / 2) * (float(_i0(2 * x)) - q * math.exp(-mu / 2))
        return qc + qe, e_z * qc + (1 - e_z) * qe
    y = q * math.exp(-mu / 4)
    gain = 2 * y * y * (1 + 2 * y * y - 4 * y * float(_i0(x)) + float(_i0(2 * x)))
    err = gain / 2 - (1 - 2 * e_x) * y * y * (float(_i0(2 * x)) - 1)
    return gain, err


def _mdi_basis(a, b):
    bases = {{"o": None, "x": "X", "y": "X", "z": "Z"}[c] for c in (a, b)} - {None}
    return "Z" if bases == {"Z"} else "X"


def phase_pass(k_a, k_b, psi, M, fraction):
    """Return ``(passes, expect_d1)`` of the SNS X-window phase post-selection.

    With ``phi_est = 2 pi (k_a - k_b) / M + psi``, a pair passes when ``phi_est`` is within
    ``pi * fraction / 2`` of 0 (D0 should click: ``expect_d1`` false) or of ``pi`` (D1 should
    click). The accepted fraction of uniformly random phases is ``fraction``.
    """
    phi = 2 * np.pi * (np.asarray(k_a, dtype=float) - np.asarray(k_b, dtype=float)) / M \
        + np.asarray(psi, dtype=float)
    half = np.pi * fraction / 2
    d0 = np.abs(np.angle(np.exp(1j * phi)))          # distance to 0 in [0, pi]
    near0 = d0 <= half
    nearpi = (np.pi - d0) <= half
    return near0 | nearpi, nearpi & ~near0


def expected_sent(link, pulses):
    """Return the expected windows per class pair ``{(a, b): N p_a p_b}``."""
    p = link.class_probs
    return {(a, b): pulses * p[a] * p[b] for a in link.classes for b in link.classes}


# ---------------------------------------------------------------------------- fast mode
def _pass_prob(delta_k, r, link):
    """P(pass | delta_k, r) over the estimate noise (vectorised)."""
    M, frac = link.phase_slices, link.postselect_fraction
    half = np.pi * frac / 2
    s = link.phase.estimate_noise_rad
    base = 2 * np.pi * np.asarray(delta_k, dtype=float) / M + np.asarray(r, dtype=float)
    if s == 0:
        return phase_pass(delta_k, 0, r, M, frac)[0].astype(float)
    total = 0.0
    for centre in (0.0, np.pi, -np.pi, 2 * np.pi, -2 * np.pi):
        # need base + n in [centre - half, centre + half] (mod 2 pi; a few images suffice)
        lo = (centre - half - base) / s
        hi = (centre + half - base) / s
        total = total + ndtr(hi) - ndtr(lo)
    return np.minimum(total, 1.0)


def _sns_pair_tables(link, mu_a, mu_b, stratify):
    """Return per-stratum (prob of stratum, prob effective | stratum) and the envelope."""
    M = link.phase_slices
    sr = link.phase.sigma_residual
    dk = np.arange(M)[:, None]
    r = (sr * _GH_X)[None, :]
    w_r = _GH_W[None, :] / M
    p0, p1 = sns_clicks(link.eta_arm, mu_a, mu_b, 2 * np.pi * dk / M + r, link.p_noise)
    eff = p0 + p1
    if not stratify:
        return [(1.0, float(np.sum(w_r * eff)))]
    pp = _pass_prob(dk, r, link)
    P_pass = float(np.sum(w_r * pp))
    out = []
    for weight, pe in ((P_pass, float(np.sum(w_r * pp * eff))),
                       (1 - P_pass, float(np.sum(w_r * (1 - pp) * eff)))):
        out.append((weight, pe / weight if weight > 0 else 0.0))
    return out


def _sample_sns_events(link, mu_a, mu_b, n, rng, want_pass=None):
    """Sample ``n`` effective-event attributes of a pair (rejection; see module docstring)."""
    M = link.phase_slices
    sr, se = link.phase.sigma_residual, link.phase.estimate_noise_rad
    if want_pass is None and (mu_a == 0 or mu_b == 0):
        # no interference: phases, residual and estimate independent of the click, and the two
        # detectors equally likely
        ka = rng.integers(0, M, n)
        kb = rng.integers(0, M, n)
        s = math.hypot(sr, se)      # psi = r + n, r unused here
        psi = rng.normal(0, s, n) if s > 0 else np.zeros(n)
        return ka, kb, psi, rng.integers(0, 2, n, dtype=np.uint8).astype(bool)
    phis = np.linspace(0, 2 * np.pi, 721)
    e0, e1 = sns_clicks(link.eta_arm, mu_a, mu_b, phis, link.p_noise)
    wmax = float(np.max(e0 + e1)) * 1.0001 + 1e-300
    parts = []
    got = 0
    while got < n:
        m = min(1 << 21, max(64, int(1.3 * (n - got) * (3 if want_pass is None else 12))))
        ka = rng.integers(0, M, m)
        kb = rng.integers(0, M, m)
        r = rng.normal(0, sr, m) if sr > 0 else np.zeros(m)
        psi = r + (rng.normal(0, se, m) if se > 0 else 0.0)
        phi = 2 * np.pi * (ka - kb) / M + r
        p0, p1 = sns_clicks(link.eta_arm, mu_a, mu_b, phi, link.p_noise)
        keep = rng.random(m) * wmax < p0 + p1
        if want_pass is not None:
            keep &= phase_pass(ka, kb, psi, M, link.postselect_fraction)[0] == want_pass
        d1 = rng.random(m) * (p0 + p1) >= p0
        parts.append((ka[keep], kb[keep], psi[keep], d1[keep]))
        got += int(np.count_nonzero(keep))
    ka_out, kb_out, psi_out, d1_out = (np.concatenate([p[i] for p in parts]) for i in range(4))
    flip = rng.random(n) < link.misalignment
    return ka_out[:n], kb_out[:n], psi_out[:n], d1_out[:n] ^ flip


def _unique_slots(total, pulses, rng):
    """Return ``total`` distinct slots uniform in ``[0, pulses)``, sorted."""
    if total > pulses:
        raise ValueError(f"more events ({total}) than pulses ({pulses})")
    if pulses <= 4 * total + 1024:
        return np.sort(rng.permutation(pulses)[:total]).astype(np.int64)
    slots = np.sort(rng.integers(0, pulses, total, dtype=np.int64))
    while True:
        dup = np.flatnonzero(slots[1:] == slots[:-1])
        if dup.size == 0:
            return slots
        slots[dup] = rng.integers(0, pulses, dup.size, dtype=np.int64)
        slots.sort()


def simulate_fast(link, pulses, rng, *, channel=0):
    """Return the :class:`ChannelRecord` of ``pulses`` windows by class-wise sampling."""
    pulses = _check_pulses(pulses)
    names = link.classes
    C = len(names)
    probs = np.array([link.class_probs[a] * link.class_probs[b] for a in names for b in names])
    counts = rng.multinomial(pulses, probs / probs.sum())
    sent = {(a, b): int(counts[i * C + j]) for i, a in enumerate(names)
            for j, b in enumerate(names)}
    cols = {k: [] for k in ("a_cls", "b_cls", "a_bit", "b_bit", "a_phase", "b_phase",
                            "outcome", "psi")}

    def add(k, a_cls, b_cls, a_bit, b_bit, ka, kb, outcome, psi):
        for name, v, dt in (("a_cls", a_cls, np.int8), ("b_cls", b_cls, np.int8),
                            ("a_bit", a_bit, np.uint8), ("b_bit", b_bit, np.uint8),
                            ("a_phase", ka, np.uint16), ("b_phase", kb, np.uint16),
                            ("outcome", outcome, np.uint8), ("psi", psi, np.float32)):
            arr = np.asarray(v, dtype=dt)
            cols[name].append(np.full(k, arr, dt) if arr.ndim == 0 else arr)

    x11_pass = 0
    M = link.phase_slices
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            n_ab = sent[(a, b)]
            if n_ab == 0:
                continue
            mu_a, mu_b = link.class_mu[a], link.class_mu[b]
            if link.protocol == "sns":
                strat = (a, b) == ("x1", "x1")
                tables = _sns_pair_tables(link, mu_a, mu_b, strat)
                if strat:
                    n_pass = int(rng.binomial(n_ab, tables[0][0]))
                    x11_pass = n_pass
                    groups = ((n_pass, tables[0][1], True), (n_ab - n_pass, tables[1][1], False))
                else:
                    groups = ((n_ab, tables[0][1], None),)
                for size, pe, want in groups:
                    k = int(rng.binomial(size, min(pe, 1.0)))
                    if k == 0:
                        continue
                    ka, kb, psi, d1 = _sample_sns_events(link, mu_a, mu_b, k, rng, want)
                    add(k, i, j, 1 if a == "zs" else 0, 0 if b == "zs" else 1, ka, kb, d1, psi)
            else:
                basis = _mdi_basis(a, b)
                Q, EQ = mdi_gain(link.eta_arm, mu_a, mu_b, link.p_noise, link.misalignment,
                                 link.e_x, basis)
                k = int(rng.binomial(n_ab, min(Q, 1.0)))
                if k == 0:
                    continue
                err = rng.random(k) < (EQ / Q if Q > 0 else 0.5)
                abit = rng.integers(0, 2, k, dtype=np.uint8)
                add(k, i, j, abit, abit ^ 1 ^ err, rng.integers(0, M, k), rng.integers(0, M, k),
                    rng.integers(0, 2, k), 0.0)
    total = sum(c.size for c in cols["a_cls"])
    events = np.zeros(total, EVENT_DTYPE)
    if total:
        # a uniformly random subset of slots, matched to the events in random order
        perm = rng.permutation(total)
        events["slot"] = _unique_slots(total, pulses, rng)
        for name, parts in cols.items():
            events[name] = np.concatenate(parts)[perm]
    return ChannelRecord(protocol=link.protocol, channel=channel, pulses=pulses, sent=sent,
                         events=events, x11_pass_sent=x11_pass, mode="fast",
                         phase_slices=link.phase_slices)


def _check_pulses(pulses):
    if isinstance(pulses, float) and pulses.is_integer():
        pulses = int(pulses)
    if not isinstance(pulses, (int, np.integer)) or pulses < 1:
        raise ValueError(f"pulses must be a positive integer, not {pulses!r}")
    return int(pulses)


# ---------------------------------------------------------------------------- exact mode
def iid_settings(link, rng):
    """Return a ``settings(first_slot, count)`` callable drawing i.i.d. classes, bits, phases.

    A stand-in for a transmitter's pattern (same distribution as the keyed generator's model);
    the draws depend on call order, not on ``first_slot``.
    """
    names = link.classes
    p = np.array([link.class_probs[c] for c in names])

    def settings(first_slot, count):
        return {"cls": rng.choice(len(names), count, p=p).astype(np.int8),
                "bit": rng.integers(0, 2, count, dtype=np.uint8),
                "phase_slice": rng.integers(0, link.phase_slices, count).astype(np.uint16)}
    return settings


def simulate_exact(link, pulses, rng, settings_a, settings_b, *, channel=0, chunk=1 << 16):
    """Return the :class:`ChannelRecord` of slots ``[0, pulses)`` simulated one by one.

    Slots whose ``cls`` is negative on either side (reference or idle slots) carry no quantum
    window: they are skipped and not counted in ``pulses`` of the record.
    """
    pulses = _check_pulses(pulses)
    names = link.classes
    C = len(names)
    mu = np.array([link.class_mu[c] for c in names])
    M = link.phase_slices
    per = link.ref_period_slots
    sr, se = link.phase.sigma_residual, link.phase.estimate_noise_rad
    sent = np.zeros(C * C, np.int64)
    chunks = []
    quantum = 0
    x11_pass = 0
    x1 = names.index("x1") if link.protocol == "sns" else -1
    if link.protocol == "mdi":
        tables = {}
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                tables[i, j] = mdi_gain(link.eta_arm, mu[i], mu[j], link.p_noise,
                                        link.misalignment, link.e_x, _mdi_basis(a, b))
        Qt = np.array([[tables[i, j][0] for j in range(C)] for i in range(C)])
        EQt = np.array([[tables[i, j][1] for j in range(C)] for i in range(C)])
    for start in range(0, pulses, chunk):
        cnt = min(chunk, pulses - start)
        sa, sb = settings_a(start, cnt), settings_b(start, cnt)
        slots = np.arange(start, start + cnt, dtype=np.int64)
        ca, cb = np.asarray(sa["cls"], np.int64), np.asarray(sb["cls"], np.int64)
        q = (ca >= 0) & (cb >= 0)
        slots, ca, cb = slots[q], ca[q], cb[q]
        ka = np.asarray(sa["phase_slice"], np.int64)[q]
        kb = np.asarray(sb["phase_slice"], np.int64)[q]
        ba = np.asarray(sa["bit"], np.uint8)[q]
        bb = np.asarray(sb["bit"], np.uint8)[q]
        quantum += slots.size
        sent += np.bincount(ca * C + cb, minlength=C * C)
        period = slots // per
        first_p, last_p = int(period[0]) if slots.size else 0, int(period[-1]) if slots.size else 0
        # residual and estimate per reference period (drawn in period order)
        nper = last_p - first_p + 1
        r_p = rng.normal(0, sr, nper) if sr > 0 else np.zeros(nper)
        psi_p = r_p + (rng.normal(0, se, nper) if se > 0 else 0.0)
        r = r_p[period - first_p]
        psi = psi_p[period - first_p]
        u = rng.random(slots.size)
        if link.protocol == "sns":
            p0, p1 = sns_clicks(link.eta_arm, mu[ca], mu[cb], 2 * np.pi * (ka - kb) / M + r,
                                link.p_noise)
            hit = u < p0 + p1
            d1 = u >= p0
            flip = rng.random(slots.size) < link.misalignment
            sel = (ca == x1) & (cb == x1)
            x11_pass += int(np.count_nonzero(
                phase_pass(ka[sel], kb[sel], psi[sel], M, link.postselect_fraction)[0]))
            zs = names.index("zs")
            abit = (ca == zs).astype(np.uint8)
            bbit = (cb != zs).astype(np.uint8)
            outcome = (d1 ^ flip).astype(np.uint8)
        else:
            Q, EQ = Qt[ca, cb], EQt[ca, cb]
            same = ba == bb
            hit = u < np.where(same, 2 * EQ, 2 * (Q - EQ))
            abit, bbit = ba, bb
            outcome = rng.integers(0, 2, slots.size).astype(np.uint8)
        ev = np.zeros(int(np.count_nonzero(hit)), EVENT_DTYPE)
        ev["slot"] = slots[hit]
        ev["a_cls"], ev["b_cls"] = ca[hit], cb[hit]
        ev["a_bit"], ev["b_bit"] = abit[hit], bbit[hit]
        ev["a_phase"], ev["b_phase"] = ka[hit], kb[hit]
        ev["outcome"] = outcome[hit]
        ev["psi"] = psi[hit] if link.protocol == "sns" else 0.0
        chunks.append(ev)
    events = np.concatenate(chunks) if chunks else np.zeros(0, EVENT_DTYPE)
    sent_d = {(a, b): int(sent[i * C + j]) for i, a in enumerate(names)
              for j, b in enumerate(names)}
    return ChannelRecord(protocol=link.protocol, channel=channel, pulses=quantum, sent=sent_d,
                         events=events, x11_pass_sent=x11_pass, mode="exact",
                         phase_slices=link.phase_slices)
