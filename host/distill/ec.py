"""Error correction: LDPC syndrome reconciliation with blind rate adaptation.

Interface
---------
``make_code(n, m, *, seed=0) -> scipy.sparse.csr_matrix``
    Parity-check matrix ``H`` (``m x n``, rate ``1 - m / n``) of an irregular LDPC code
    built from the node-perspective variable degree distribution :data:`VAR_DEGREES` by a random
    socket permutation (parallel edges removed), check degrees concentrated on two values.
    Deterministic for a given ``(n, rate, seed)`` and cached.
``Reconciler(frame_bits=16384, modulation=0.3, steps=5, max_iter=60, bp_method="product_sum",
f_start=1.15, seed=0)``
    ``reconcile(alice_bits, bob_bits, qber_hint, channel, *, alice="alice", bob="bob",
    rng=None) -> ECResult`` runs the protocol over a :class:`~combkey.distill.channel.
    ClassicalChannel`: Alice sends syndromes, Bob decodes with the ``ldpc`` package's
    :class:`ldpc.BpDecoder` (syndrome mode) and asks for more information when a frame fails.
    Bits are in 0/1 ``uint8`` arrays of equal length; the last partial frame is padded with
    shortened (publicly known) zeros. Alice's bits are never changed; Bob's corrected bits are
    returned.

Blind rate adaptation (Martinez-Mateo, Elkouss, Martin, "Blind reconciliation", QIC 12, 791
(2012)): each frame of ``n`` code bits carries ``k = n - d`` key bits and ``d`` filler bits that
Alice draws at random, ``d ~ modulation * n h(qber_hint)`` (at least 8), so that the blind steps
span about ``modulation`` in ``f``. Every attempt starts with all ``d`` filler positions
punctured (Bob gives them probability 1/2); after a failed decoding Alice reveals the values of
``d / steps`` more filler positions (they become shortened, probability ~0), and Bob decodes
again. After ``steps`` failures Alice sends the frame's key bits in the clear (the frame is then
fully leaked, never dropped). The code (rate adaptation by a family of codes) has
``m = f_start k h(qber_hint) + d`` checks rounded up to a multiple of 16, so the first attempt
has ``f ~ f_start`` (codes are built on demand and cached).

Leakage accounting (per frame): ``m - p`` bits, where ``p`` is the number of filler positions
still punctured when decoding succeeded (the syndrome's ``m`` bits minus the entropy of the
punctured filler), plus ``k`` bits for a frame sent in the clear. ``ECResult.leak_bits`` sums
them; ``ECResult.efficiency`` is ``leak_bits / (n_bits h(E))`` with ``E`` the error rate Bob
actually corrected (``nan`` when ``E = 0``). The verification hash is separate
(:mod:`combkey.distill.verify`). A frame whose decoder converged to a wrong word passes here
and is caught by verification.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import ldpc
import numpy as np
import scipy.sparse as sp

from .channel import Bits

__all__ = ["make_code", "Reconciler", "ECResult", "VAR_DEGREES", "h2"]

#: Node-perspective variable degree distribution ``{degree: fraction of variable nodes}``.
VAR_DEGREES = {3: 0.5, 4: 0.5}


def h2(x):
    """Binary entropy in bits (0 at 0 and 1)."""
    if x <= 0 or x >= 1:
        return 0.0
    return -x * math.log2(x) - (1 - x) * math.log2(1 - x)


@functools.lru_cache(maxsize=64)
def make_code(n, m, *, seed=0):
    """Return the ``m x n`` parity-check matrix (see module docstring)."""
    if not isinstance(n, int) or n < 64:
        raise ValueError(f"n must be an integer >= 64, not {n!r}")
    if not isinstance(m, int) or not 0 < m < n:
        raise ValueError(f"m must be an integer in (0, n), not {m!r}")
    rng = np.random.default_rng([seed, n, m])
    degs = np.array(sorted(VAR_DEGREES))
    counts = np.floor(np.array([VAR_DEGREES[d] for d in degs]) * n).astype(int)
    counts[0] += n - counts.sum()
    vdeg = np.repeat(degs, counts)
    rng.shuffle(vdeg)
    edges = int(vdeg.sum())
    vsock = np.repeat(np.arange(n, dtype=np.int64), vdeg)
    csock = np.arange(edges, dtype=np.int64) % m
    csock = csock[rng.permutation(edges)]
    key = np.unique(vsock * m + csock)
    return sp.csr_matrix((np.ones(key.size, np.uint8), (key % m, key // m)), shape=(m, n))


@dataclass
class ECResult:
    """Outcome of :meth:`Reconciler.reconcile`."""

    bob_corrected: np.ndarray
    n_bits: int
    errors_corrected: int
    leak_bits: int
    frames: int
    frames_retried: int = 0
    frames_clear: int = 0
    attempts: int = 0
    rates_used: dict = field(default_factory=dict)

    @property
    def qber(self):
        """Error rate Bob corrected."""
        return self.errors_corrected / self.n_bits if self.n_bits else 0.0

    @property
    def efficiency(self):
        """Realised ``f = leak / (n h(E))`` (``nan`` when no error was corrected)."""
        h = h2(self.qber)
        return self.leak_bits / (self.n_bits * h) if h > 0 else float("nan")

    @property
    def frame_error_rate(self):
        """Fraction of frames that failed every decoding attempt (sent in the clear)."""
        return self.frames_clear / self.frames if self.frames else 0.0


class Reconciler:
    """Blind LDPC reconciliation (module docstring)."""

    def __init__(self, frame_bits=16384, modulation=0.3, steps=5, max_iter=60,
                 bp_method="product_sum", f_start=1.15, seed=0):
        if not isinstance(frame_bits, int) or frame_bits < 256:
            raise ValueError(f"frame_bits must be an integer >= 256, not {frame_bits!r}")
        if not 0 <= modulation <= 1:
            raise ValueError(f"modulation must be in [0, 1], not {modulation!r}")
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, not {steps!r}")
        if bp_method not in ("product_sum", "minimum_sum"):
            raise ValueError(f"bp_method must be 'product_sum' or 'minimum_sum', "
                             f"not {bp_method!r}")
        self.n = frame_bits
        self.modulation = modulation
        self.steps = steps
        self.max_iter = max_iter
        self.bp_method = bp_method
        self.f_start = f_start
        self.seed = seed
        self._decoders = {}

    # -------------------------------------------------------------- code selection
    def layout(self, qber):
        """Return ``(m, d)``: checks and filler bits per frame for an estimated QBER."""
        h = h2(min(max(qber, 1e-4), 0.45))
        n = self.n
        d = max(8, int(round(self.modulation * n * h)))
        k = n - d
        m = int(math.ceil((self.f_start * k * h + d) / 16.0) * 16)
        return min(m, n - 16), d

    def _decoder(self, m):
        got = self._decoders.get(m)
        if got is None:
            H = make_code(self.n, m, seed=self.seed)
            dec = ldpc.BpDecoder(H, error_rate=0.01, max_iter=self.max_iter,
                                 bp_method=self.bp_method, schedule="parallel")
            got = self._decoders[m] = (H, dec)
        return got

    # -------------------------------------------------------------- protocol
    def reconcile(self, alice_bits, bob_bits, qber_hint, channel, *, alice="alice", bob="bob",
                  rng=None, topic="ec"):
        """Reconcile Bob's bits to Alice's over ``channel``; return an :class:`ECResult`."""
        a = np.asarray(alice_bits, dtype=np.uint8)
        b = np.asarray(bob_bits, dtype=np.uint8)
        if a.shape != b.shape or a.ndim != 1:
            raise ValueError(f"alice_bits and bob_bits must be 1-D of equal length, not "
                             f"{a.shape!r} and {b.shape!r}")
        if not 0 <= qber_hint < 0.5:
            raise ValueError(f"qber_hint must be in [0, 0.5), not {qber_hint!r}")
        rng = rng if rng is not None else np.random.default_rng()
        total = a.size
        out = np.empty_like(b)
        res = ECResult(bob_corrected=out, n_bits=total, errors_corrected=0, leak_bits=0,
                       frames=0)
        m, d = self.layout(qber_hint)
        H, dec = self._decoder(m)
        n = self.n
        k = n - d
        # fixed layout: filler positions spread over the frame (same for every frame)
        filler = np.sort(np.random.default_rng([self.seed, n, d]).choice(n, d, replace=False))
        keypos = np.setdiff1d(np.arange(n), filler)
        step = int(math.ceil(d / self.steps)) if d else 0
        for start in range(0, total, k):
            chunk = slice(start, min(start + k, total))
            kb = chunk.stop - chunk.start
            res.frames += 1
            res.rates_used[1 - m / n] = res.rates_used.get(1 - m / n, 0) + 1
            # --- Alice: frame = key bits + random filler (short frames padded with shortened 0s)
            xa = np.zeros(n, np.uint8)
            xa[keypos[:kb]] = a[chunk]
            fill_vals = rng.integers(0, 2, d, dtype=np.uint8)
            xa[filler] = fill_vals
            syn = (H @ xa).astype(np.uint8) & 1
            channel.send(alice, bob, topic + ".syndrome", Bits(syn))
            # --- Bob
            s_a = channel.recv(bob, topic + ".syndrome").array
            xb = np.zeros(n, np.uint8)
            xb[keypos[:kb]] = b[chunk]
            probs = np.full(n, min(max(qber_hint, 1e-4), 0.45))
            probs[keypos[kb:]] = 1e-12  # padding: publicly known zeros (shortened)
            probs[filler] = 0.5
            revealed = 0
            ok = False
            punct = d
            for attempt in range(self.steps + 1):
                res.attempts += 1
                if attempt > 0:
                    # Bob asks for the next filler values; Alice reveals them.
                    channel.send(bob, alice, topic + ".nack", True)
                    channel.recv(alice, topic + ".nack")
                    idx = filler[revealed:revealed + step]
                    channel.send(alice, bob, topic + ".reveal", Bits(xa[idx]))
                    vals = channel.recv(bob, topic + ".reveal").array
                    xb[idx] = vals
                    probs[idx] = 1e-12
                    revealed += idx.size
                    punct = d - revealed
                    res.frames_retried += attempt == 1
                target = (s_a ^ ((H @ xb).astype(np.uint8) & 1)).astype(np.uint8)
                dec.update_channel_probs(probs)
                e = dec.decode(target)
                cand = xb ^ e
                if dec.converge and np.array_equal((H @ cand).astype(np.uint8) & 1, s_a):
                    ok = True
                    break
                if revealed >= d:
                    break
            if ok:
                channel.send(bob, alice, topic + ".ack", True)
                channel.recv(alice, topic + ".ack")
                out[chunk] = cand[keypos[:kb]]
                res.leak_bits += H.shape[0] - punct
            else:
                channel.send(bob, alice, topic + ".clear_request", True)
                channel.recv(alice, topic + ".clear_request")
                channel.send(alice, bob, topic + ".clear", Bits(a[chunk]))
                out[chunk] = channel.recv(bob, topic + ".clear").array
                res.leak_bits += H.shape[0] - punct + kb
                res.frames_clear += 1
            res.errors_corrected += int(np.count_nonzero(out[chunk] != b[chunk]))
        return res
