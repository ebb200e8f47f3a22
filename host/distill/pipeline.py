"""Distillation of one channel block: sifting, parameter estimation, AOPP, EC, verification, PA.

Interface
---------
``DistillConfig(ec_method="cascade", tag_bits=64, cascade_passes=10, ldpc_frame_bits=16384,
fault=None)``: ``ec_method`` ``"cascade"`` (:mod:`.cascade`) or ``"ldpc"`` (:mod:`.ec`);
``tag_bits``: length of the verification hash (``epsilon_ver = 2**-tag_bits``); ``fault``:
test hook, ``"flip_after_ec"`` flips one of Bob's corrected bits so that verification fails.

``distill_channel(record, params, intensities, probabilities, channel, rng, cfg=None,
expected=None) -> ChannelResult``: ``record`` is a :class:`combkey.sim.session.ChannelRecord`
(or the same fields from a real session), ``params`` a :class:`combkey.keyrate.LinkParams`
(``params.aopp`` selects AOPP for SNS), ``channel`` a
:class:`~combkey.distill.channel.ClassicalChannel` with parties ``alice``, ``bob``,
``charlie``. ``expected`` (optional) are the expected counts of the link
(:func:`combkey.keyrate.sns_expected_counts` / ``mdi_expected_counts``); they give the QBER
estimate that chooses the error-correction parameters and the pre-EC key estimate, as the
previous block of a running link would.

Steps (each message goes through ``channel``; Alice and Bob only use their own columns of the
record plus what they received):

1. Charlie announces the effective events (slot, outcome, SNS phase estimate ``psi``).
2. SNS: each side announces, per event, whether its window was Z (class hidden) or X (class and
   phase slice public). Z-Z events are the sifted key (Alice: sent = 1; Bob: sent = 0). X-X
   events give the decoy counts; ``(x1, x1)`` events pass the phase post-selection
   :func:`combkey.sim.session.phase_pass` with Charlie's estimate, and an error is a click in
   the detector that should stay dark. MDI: each side announces its class (``o x y z``);
   ``(z, z)`` events are the sifted key (Bob flips his bit: |Psi-> anticorrelates);
   X-basis pairs announce their bits to count errors.
3. Pre-EC estimate with the key-rate engine (``sns_finite_key`` / ``mdi_finite_key``) using the
   expected QBER: no key -> abort with the engine's reason.
4. SNS with AOPP: Bob pairs one bit of each of his groups (random pairs, random order) and
   announces the pairs; Alice announces which have odd parity; the first bit of each kept pair
   remains.
5. Error correction; realised ``f = leak / (n h(E))``.
6. Verification: Alice sends a fresh Toeplitz seed and her ``tag_bits`` hash; a mismatch
   discards the block (``verification_failed``, never output).
7. Final estimate with the observed counts and the realised leakage (syndrome/parities plus the
   tag bits): ``key_bits`` of the engine; 0 -> abort with its reason.
8. Privacy amplification: Alice sends a fresh Toeplitz seed of ``n + key_bits - 1`` bits; both
   compute ``key_bits`` output bits (:func:`.toeplitz.toeplitz_hash`).

``ChannelResult`` fields: ``channel``, ``protocol``, ``aborted``, ``abort_reason``,
``sifted_bits`` (Z-Z events), ``qber_z`` (error rate of the reconciled bits; after AOPP for
SNS with AOPP), ``qber_z_sifted`` (SNS: before AOPP; with AOPP estimated from the fraction
``d`` of pairs Alice discarded: Bob's group-0 error rate ``(d - e1) / (1 - 2 e1)`` with the
group-1 rate ``e1`` of the estimate, averaged over both groups), ``qber_x`` (SNS:
post-selected X11; MDI: ``(x, x)``),
``ec_bits``, ``ec_errors``, ``ec_leak_bits``, ``ec_efficiency``, ``verification_failed``,
``final_key_bits``, ``key_alice``, ``key_bob`` (0/1 arrays, empty when aborted),
``key_result`` (:class:`combkey.keyrate.KeyResult` of step 7), ``epsilon`` (its
``epsilon_total`` plus ``2**-tag_bits``), ``pulses``, ``classical_bits``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..keyrate import mdi as kmdi
from ..keyrate import sns as ksns
from ..sim.session import MDI_CLASSES, SNS_CLASSES, phase_pass
from .cascade import cascade_reconcile
from .channel import Bits
from .ec import Reconciler
from .toeplitz import seed_length, toeplitz_hash

__all__ = ["DistillConfig", "ChannelResult", "distill_channel"]

_Z_HIDDEN = -1


@dataclass(frozen=True)
class DistillConfig:
    """Distillation options (module docstring)."""

    ec_method: str = "cascade"
    tag_bits: int = 64
    cascade_passes: int = 10
    ldpc_frame_bits: int = 16384
    fault: str | None = None

    def __post_init__(self):
        if self.ec_method not in ("cascade", "ldpc"):
            raise ValueError(f"ec_method must be 'cascade' or 'ldpc', not {self.ec_method!r}")
        if not isinstance(self.tag_bits, int) or not 16 <= self.tag_bits <= 256:
            raise ValueError(f"tag_bits must be an integer in [16, 256], not {self.tag_bits!r}")
        if self.fault not in (None, "flip_after_ec"):
            raise ValueError(f"fault must be None or 'flip_after_ec', not {self.fault!r}")


@dataclass
class ChannelResult:
    """Outcome of :func:`distill_channel` (module docstring)."""

    channel: int
    protocol: str
    pulses: int
    aborted: bool = False
    abort_reason: str | None = None
    sifted_bits: int = 0
    qber_z: float = float("nan")
    qber_z_sifted: float = float("nan")
    qber_x: float = float("nan")
    ec_bits: int = 0
    ec_errors: int = 0
    ec_leak_bits: int = 0
    ec_efficiency: float = float("nan")
    verification_failed: bool = False
    final_key_bits: int = 0
    key_alice: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    key_bob: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    key_result: object = None
    epsilon: float = 0.0
    classical_bits: int = 0

    def summary(self, clock_hz):
        """Return the JSON-friendly per-channel figures."""
        def num(x):
            return None if x is None or (isinstance(x, float) and math.isnan(x)) else x
        return {
            "channel": self.channel, "pulses": self.pulses, "aborted": self.aborted,
            "abort_reason": self.abort_reason, "sifted_bits": self.sifted_bits,
            "qber_z": num(self.qber_z_sifted), "qber_ec": num(self.qber_z),
            "qber_x": num(self.qber_x), "ec_bits": self.ec_bits, "ec_errors": self.ec_errors,
            "ec_leak_bits": self.ec_leak_bits, "ec_efficiency": num(self.ec_efficiency),
            "verification_failed": self.verification_failed,
            "final_key_bits": self.final_key_bits,
            "keys_match": bool(np.array_equal(self.key_alice, self.key_bob)),
            "secret_key_rate_bps": self.final_key_bits * clock_hz / self.pulses,
            "epsilon": self.epsilon, "classical_bits": self.classical_bits,
        }


# ------------------------------------------------------------------------------------ helpers
def _abort(res, reason, channel):
    res.aborted = True
    res.abort_reason = reason
    res.classical_bits = channel.total_bits()
    return res


def _exchange(channel, topic, alice_payload, bob_payload):
    """Alice and Bob send each other a payload; return what (alice, bob) received."""
    channel.send("alice", "bob", topic, alice_payload)
    channel.send("bob", "alice", topic, bob_payload)
    return channel.recv("alice", topic), channel.recv("bob", topic)


def _reconcile(a, b, qber_hint, channel, rng, cfg):
    if cfg.ec_method == "cascade":
        return cascade_reconcile(a, b, qber_hint, channel, passes=cfg.cascade_passes, rng=rng)
    return Reconciler(frame_bits=cfg.ldpc_frame_bits).reconcile(a, b, qber_hint, channel,
                                                                 rng=rng)


def _verify(a, b, channel, rng, tag_bits):
    """Return True when Bob's key hashes to Alice's tag (fresh Toeplitz seed)."""
    n = a.size
    if n < tag_bits:   # short keys: compare through a padded hash
        a = np.concatenate([a, np.zeros(tag_bits - n, np.uint8)])
        b = np.concatenate([b, np.zeros(tag_bits - n, np.uint8)])
    seed = rng.integers(0, 2, seed_length(a.size, tag_bits), dtype=np.uint8)
    tag = toeplitz_hash(a, seed, tag_bits)
    channel.send("alice", "bob", "verify.seed", Bits(seed))
    channel.send("alice", "bob", "verify.tag", Bits(tag))
    seed_b = channel.recv("bob", "verify.seed").array
    tag_a = channel.recv("bob", "verify.tag").array
    ok = bool(np.array_equal(toeplitz_hash(b, seed_b, tag_bits), tag_a))
    channel.send("bob", "alice", "verify.result", ok)
    return ok and bool(channel.recv("alice", "verify.result"))


def _amplify(a, b, key_bits, channel, rng):
    seed = rng.integers(0, 2, seed_length(a.size, key_bits), dtype=np.uint8)
    channel.send("alice", "bob", "pa.seed", Bits(seed))
    seed_b = channel.recv("bob", "pa.seed").array
    return toeplitz_hash(a, seed, key_bits), toeplitz_hash(b, seed_b, key_bits)


# ------------------------------------------------------------------------------------ SNS
def _distill_sns(rec, params, intensities, probabilities, channel, rng, cfg, expected, res):
    ev = rec.events
    ann = {"slot": ev["slot"], "outcome": ev["outcome"], "psi": ev["psi"]}
    channel.send("charlie", "alice", "announce", ann)
    channel.send("charlie", "bob", "announce", ann)
    ann_a = channel.recv("alice", "announce")
    channel.recv("bob", "announce")
    # each side: public part of its settings (Z windows hidden as -1)
    zset = (SNS_CLASSES.index("zn"), SNS_CLASSES.index("zs"))
    a_cls, b_cls = ev["a_cls"].astype(np.int8), ev["b_cls"].astype(np.int8)
    a_pub = np.where(np.isin(a_cls, zset), _Z_HIDDEN, a_cls).astype(np.int8)
    b_pub = np.where(np.isin(b_cls, zset), _Z_HIDDEN, b_cls).astype(np.int8)
    a_ph = np.where(a_pub >= 0, ev["a_phase"], 0).astype(np.uint16)
    b_ph = np.where(b_pub >= 0, ev["b_phase"], 0).astype(np.uint16)
    (b_pub_at_a, b_ph_at_a), (a_pub_at_b, a_ph_at_b) = _exchange(
        channel, "sift.windows", (a_pub, a_ph), (b_pub, b_ph))
    # both now compute the same public tables (shown from Alice's side)
    counts = ksns.SNSCounts(pulses=rec.pulses, sent=dict(rec.sent))
    for i, a in enumerate(SNS_CLASSES[2:], start=2):
        for j, b in enumerate(SNS_CLASSES[2:], start=2):
            counts.detected[(a, b)] = int(np.count_nonzero((a_pub == i) & (b_pub_at_a == j)))
    x1 = SNS_CLASSES.index("x1")
    sel = (a_pub == x1) & (b_pub_at_a == x1)
    passes, expect_d1 = phase_pass(a_ph[sel], b_ph_at_a[sel], ann_a["psi"][sel],
                                   rec.phase_slices, params.x_postselect_fraction)
    out = ann_a["outcome"][sel][passes].astype(bool)
    counts.x11_selected_sent = rec.x11_pass_sent
    counts.x11_selected_detected = int(np.count_nonzero(passes))
    counts.x11_selected_errors = int(np.count_nonzero(out != expect_d1[passes]))
    res.qber_x = (counts.x11_selected_errors / counts.x11_selected_detected
                  if counts.x11_selected_detected else float("nan"))
    # sifted Z key
    zmask = (a_pub == _Z_HIDDEN) & (b_pub_at_a == _Z_HIDDEN)
    ka = ev["a_bit"][zmask].astype(np.uint8)
    kb = ev["b_bit"][zmask].astype(np.uint8)
    res.sifted_bits = int(ka.size)
    n0, n1 = int(np.count_nonzero(kb == 0)), int(np.count_nonzero(kb == 1))
    channel.send("bob", "alice", "sift.groups", (n0, n1))
    channel.recv("alice", "sift.groups")
    counts.z_bits, counts.z_bits0, counts.z_bits1 = ka.size, n0, n1
    # expected error ratios (the "previous block" estimate)
    if expected is None:
        expected = ksns.sns_expected_counts(params, intensities, probabilities)
    e0 = expected.z_errors0 / expected.z_bits0 if expected.z_bits0 else 0.0
    e1 = expected.z_errors1 / expected.z_bits1 if expected.z_bits1 else 0.0
    counts.z_errors0, counts.z_errors1 = e0 * n0, e1 * n1
    counts.z_errors = counts.z_errors0 + counts.z_errors1
    pre = ksns.sns_finite_key(counts, params, intensities, probabilities, aopp=params.aopp)
    if pre.key_bits <= 0:
        res.key_result = pre
        return _abort(res, f"pre-EC estimate gives no key: {pre.abort_reason}", channel)
    if params.aopp:
        idx0 = rng.permutation(np.flatnonzero(kb == 0))
        idx1 = rng.permutation(np.flatnonzero(kb == 1))
        ng = min(idx0.size, idx1.size)
        pairs = np.stack([idx0[:ng], idx1[:ng]], axis=1)
        swap = rng.random(ng) < 0.5
        pairs[swap] = pairs[swap][:, ::-1]
        channel.send("bob", "alice", "aopp.pairs", pairs)
        pairs_a = channel.recv("alice", "aopp.pairs")
        keep = (ka[pairs_a[:, 0]] ^ ka[pairs_a[:, 1]]) == 1
        channel.send("alice", "bob", "aopp.keep", Bits(keep))
        keep_b = channel.recv("bob", "aopp.keep").array.astype(bool)
        a_key, b_key = ka[pairs_a[keep, 0]], kb[pairs[keep_b, 0]]
        if ng:   # pre-AOPP Z error rate from the discarded fraction (e1 from the estimate)
            disc = 1 - float(keep.mean())
            e0_obs = min(max((disc - e1) / (1 - 2 * e1), 0.0), 1.0)
            res.qber_z_sifted = (n0 * e0_obs + n1 * e1) / (n0 + n1)
        hint = (e0 * e1) / ((1 - e0) * (1 - e1) + e0 * e1)
        counts.aopp_pairs = ng
        counts.aopp_kept = int(a_key.size)
    else:
        a_key, b_key = ka, kb
        hint = counts.z_errors / counts.z_bits if counts.z_bits else 0.0
    return _finish(counts, a_key, b_key, hint, params, intensities, probabilities, channel,
                   rng, cfg, res, "sns")


# ------------------------------------------------------------------------------------ MDI
def _distill_mdi(rec, params, intensities, probabilities, channel, rng, cfg, expected, res):
    ev = rec.events
    ann = {"slot": ev["slot"], "outcome": ev["outcome"]}
    channel.send("charlie", "alice", "announce", ann)
    channel.send("charlie", "bob", "announce", ann)
    channel.recv("alice", "announce")
    channel.recv("bob", "announce")
    a_cls, b_cls = ev["a_cls"].astype(np.int8), ev["b_cls"].astype(np.int8)
    b_at_a, a_at_b = _exchange(channel, "sift.classes", a_cls, b_cls)
    counts = kmdi.MDICounts(pulses=rec.pulses, sent=dict(rec.sent))
    for i, a in enumerate(MDI_CLASSES):
        for j, b in enumerate(MDI_CLASSES):
            counts.detected[(a, b)] = int(np.count_nonzero((a_cls == i) & (b_at_a == j)))
    # X-basis pairs: both announce their bits (Psi-: correct = different bits)
    xb = np.isin(a_cls, (1, 2)) & np.isin(b_at_a, (1, 2))
    bits_b_at_a, bits_a_at_b = _exchange(channel, "sift.xbits", Bits(ev["a_bit"][xb]),
                                         Bits(ev["b_bit"][xb]))
    err = ev["a_bit"][xb] == bits_b_at_a.array
    for i, a in ((1, "x"), (2, "y")):
        for j, b in ((1, "x"), (2, "y")):
            m = (a_cls[xb] == i) & (b_at_a[xb] == j)
            counts.errors[(a, b)] = int(np.count_nonzero(err & m))
    nxx = counts.detected[("x", "x")]
    res.qber_x = counts.errors[("x", "x")] / nxx if nxx else float("nan")
    z = MDI_CLASSES.index("z")
    zmask = (a_cls == z) & (b_at_a == z)
    ka = ev["a_bit"][zmask].astype(np.uint8)
    kb = (ev["b_bit"][zmask] ^ 1).astype(np.uint8)
    res.sifted_bits = int(ka.size)
    if expected is None:
        expected = kmdi.mdi_expected_counts(params, intensities, probabilities)
    hint = expected.zz_errors / expected.zz_bits if expected.zz_bits else 0.0
    counts.errors[("z", "z")] = hint * ka.size
    pre = kmdi.mdi_finite_key(counts, params, intensities, probabilities)
    if pre.key_bits <= 0:
        res.key_result = pre
        return _abort(res, f"pre-EC estimate gives no key: {pre.abort_reason}", channel)
    return _finish(counts, ka, kb, hint, params, intensities, probabilities, channel, rng, cfg,
                   res, "mdi")


# ------------------------------------------------------------------------------------ common
def _finish(counts, a_key, b_key, hint, params, intensities, probabilities, channel, rng, cfg,
            res, protocol):
    if a_key.size == 0:
        return _abort(res, "no bits to reconcile", channel)
    ec = _reconcile(a_key, b_key, min(max(hint, 1e-6), 0.45), channel, rng, cfg)
    b_corr = ec.bob_corrected.copy()
    res.ec_bits, res.ec_errors, res.ec_leak_bits = ec.n_bits, ec.errors_corrected, ec.leak_bits
    res.ec_efficiency = ec.efficiency
    res.qber_z = ec.qber
    if not (protocol == "sns" and params.aopp):
        res.qber_z_sifted = ec.qber
    if cfg.fault == "flip_after_ec":
        b_corr[int(rng.integers(0, b_corr.size))] ^= 1
    if not _verify(a_key, b_corr, channel, rng, cfg.tag_bits):
        res.verification_failed = True
        return _abort(res, "error verification failed: block discarded", channel)
    leak = ec.leak_bits + cfg.tag_bits
    if protocol == "sns":
        if params.aopp:
            counts.aopp_errors = ec.errors_corrected
        else:
            counts.z_errors = ec.errors_corrected
        kr = ksns.sns_finite_key(counts, params, intensities, probabilities, aopp=params.aopp,
                                 leak_ec_bits=leak)
    else:
        counts.errors[("z", "z")] = ec.errors_corrected
        kr = kmdi.mdi_finite_key(counts, params, intensities, probabilities, leak_ec_bits=leak)
    res.key_result = kr
    res.epsilon = kr.epsilon_total + 2.0 ** -cfg.tag_bits
    if kr.key_bits <= 0:
        return _abort(res, kr.abort_reason or "no key", channel)
    if kr.key_bits > a_key.size:
        return _abort(res, f"key length {kr.key_bits} exceeds the reconciled bits "
                      f"{a_key.size}", channel)
    ka, kb = _amplify(a_key, b_corr, kr.key_bits, channel, rng)
    res.key_alice, res.key_bob = ka, kb
    res.final_key_bits = int(ka.size)
    res.classical_bits = channel.total_bits()
    return res


def distill_channel(record, params, intensities, probabilities, channel, rng, cfg=None,
                    expected=None):
    """Distil one channel block; return a :class:`ChannelResult` (module docstring)."""
    cfg = cfg or DistillConfig()
    res = ChannelResult(channel=record.channel, protocol=record.protocol, pulses=record.pulses)
    if record.protocol != params.protocol:
        raise ValueError(f"record.protocol must match params.protocol {params.protocol!r}, "
                         f"not {record.protocol!r}")
    if record.protocol == "sns":
        return _distill_sns(record, params, intensities, probabilities, channel, rng, cfg,
                            expected, res)
    return _distill_mdi(record, params, intensities, probabilities, channel, rng, cfg,
                        expected, res)
