"""Error correction: LDPC syndrome reconciliation with a family of optimised codes and blind
rate adaptation.

Interface
---------
``make_code(n, rate, *, seed=0, cache_dir=DEFAULT) -> scipy.sparse.csr_matrix``
    Parity-check matrix ``H`` (``m x n``, ``m = round((1 - rate) n)``, so rate ``1 - m / n``)
    of the code of design ``rate`` (a key of :data:`DISTRIBUTIONS`), built by depth-limited
    progressive edge growth (:func:`peg`) from the distribution's variable degrees; check
    degrees come out concentrated on two neighbouring values. Deterministic for a given
    ``(n, rate, seed)``; cached in memory and on disk under ``$COMBKEY_CACHE`` (default
    ``~/.cache/combkey``) ``/ldpc/peg-v1-n{n}-r{rate}-s{seed}.npz`` (``cache_dir=None``: no disk
    cache). Building takes seconds (numba); loading milliseconds.
``peg(var_degrees, m, *, seed=0, depth=2) -> (rows, cols)``
    Edge list of a Tanner graph with the given variable-node degrees (``int`` array, length
    ``n``) and ``m`` checks.
``Reconciler(frame_bits=16384, rates=RATES, f_low=1.05, f_high_min=1.3, f_step=0.04,
max_iter=40, bp_method="product_sum", ms_scaling_factor=0.75, schedule="parallel", seed=0)``
    ``layout(qber) -> (rate, m, d)`` is the code and filler size chosen for an estimated QBER;
    ``reconcile(alice_bits, bob_bits, qber_hint, channel, *, alice="alice", bob="bob", rng=None,
    topic="ec") -> ECResult`` runs the protocol over a :class:`~combkey.distill.channel.
    ClassicalChannel`: Alice sends syndromes, Bob decodes with the ``ldpc`` package's
    :class:`ldpc.BpDecoder` (syndrome mode, per-bit ``channel_probs``) and asks for more
    information when a frame fails. Bits are 0/1 ``uint8`` arrays of equal length; the last
    partial frame is padded with shortened (publicly known) zeros. Alice's bits are never
    changed; Bob's corrected bits are returned.

Codes. :data:`DISTRIBUTIONS` holds edge-perspective variable degree distributions ``lambda``
optimised for the BSC with discretised density evolution, Table I of Elkouss, Leverrier,
Alleaume, Boutros, "Efficient reconciliation protocol for discrete-variable quantum key
distribution", ISIT 2009 (doi:10.1109/ISIT.2009.5205475, arXiv:0901.2140), thresholds
0.0109 (rate 0.9), 0.0199 (0.85), 0.0298 (0.8), 0.0392 (0.75), 0.0504 (0.7), 0.0633 (0.65),
0.0766 (0.6). The 0.85 entry as printed sums to 1.0515 and is renormalised here; the check
distributions of 0.65 and 0.6 are replaced by concentrated ones (PEG fills the least
connected check). The graphs are built by progressive edge growth (Hu, Eleftheriou, Arnold,
"Regular and irregular progressive edge-growth Tanner graphs", IEEE Trans. IT 51, 386 (2005)),
variables in increasing degree, each new edge to a least-connected check among those farthest
from the variable, with the tree search cut at ``depth`` (2: no 4- or 6-cycles where the
degrees allow; this keeps building O(edges * local tree) instead of O(edges * graph)).
The thresholds are asymptotic; at 16 kbit frames the codes need some 5-15 % more than the
threshold rate, which the blind steps below supply.

Blind rate adaptation (Martinez-Mateo, Elkouss, Martin, "Blind reconciliation", QIC 12, 791
(2012)). Each frame of ``n`` code bits carries ``k = n - d`` key bits and ``d`` filler bits that
Alice draws at random. ``layout`` picks, from the family, the code with the fewest checks
``m`` such that with all ``d`` filler bits punctured the first attempt discloses
``m - d = f_low k h(q)`` with ``0 <= d <= 0.12 n`` and, with all of them revealed,
``m >= f_high_min k h(q)``. Every attempt starts with the filler punctured (Bob gives them
probability 1/2); after a failed decoding Alice reveals the values of ``ceil(f_step k h(q))``
more filler bits (they become shortened, probability ~0; the next attempt's ``f`` is ``f_step``
higher) and Bob decodes again. When all filler bits are revealed and decoding still fails,
Alice sends the frame's key bits in the clear (the frame is fully leaked, never dropped) and
the frame counts as a frame error.

Leakage accounting (per frame): ``m - p`` bits, ``p`` the number of filler bits still
punctured when decoding succeeded, i.e. the syndrome's ``m`` bits plus the revealed filler bits
minus the ``d`` random filler bits, plus ``k`` bits for a frame sent in the clear.
``ECResult.leak_bits`` sums them; ``ECResult.efficiency`` is ``leak_bits / (n_bits h(E))`` with
``E`` the error rate Bob actually corrected (``nan`` when ``E = 0``). A decoder output is
accepted only if it reproduces Alice's syndrome; a frame that converged to a different word
with the same syndrome passes here and is caught by the verification hash
(:mod:`combkey.distill.pipeline`); ``ECResult.frames_clear`` is the frame error count.
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import ldpc
import numba
import numpy as np
import scipy.sparse as sp

from .channel import Bits

__all__ = ["make_code", "peg", "Reconciler", "ECResult", "DISTRIBUTIONS", "RATES", "h2",
           "node_degrees"]

#: ``{rate: {variable degree: edge fraction lambda_i}}`` (Elkouss et al., ISIT 2009, Table I).
DISTRIBUTIONS = {
    0.90: {2: 0.07689, 3: 0.28096, 5: 0.08933, 9: 0.19620, 12: 0.30631, 21: 0.05031},
    0.85: {2: 0.04528, 3: 0.20537, 4: 0.05878, 5: 0.094274, 6: 0.08454, 7: 0.01176,
           9: 0.05137, 21: 0.50015},
    0.80: {2: 0.09420, 3: 0.18088, 6: 0.11972, 7: 0.08550, 8: 0.09816, 17: 0.07194,
           26: 0.34960},
    0.75: {2: 0.10805, 3: 0.09511, 4: 0.01449, 5: 0.13764, 6: 0.10667, 7: 0.05288,
           28: 0.01107, 31: 0.47408},
    0.70: {2: 0.05343, 3: 0.29406, 6: 0.00896, 9: 0.15571, 12: 0.12189, 25: 0.19872,
           46: 0.09572, 62: 0.02741, 65: 0.04056, 73: 0.00354},
    0.65: {2: 0.10451, 3: 0.15652, 4: 0.08057, 5: 0.00056, 9: 0.12151, 13: 0.10485,
           15: 0.10719, 21: 0.00771, 51: 0.31656},
    0.60: {2: 0.11040, 3: 0.20804, 8: 0.14163, 9: 0.14858, 26: 0.14438, 27: 0.08909,
           46: 0.00748, 71: 0.15038},
}
#: Design rates available, highest first.
RATES = tuple(sorted(DISTRIBUTIONS, reverse=True))
_CACHE_VERSION = "peg-v1"


def h2(x):
    """Binary entropy in bits (0 at 0 and 1)."""
    if x <= 0 or x >= 1:
        return 0.0
    return -x * math.log2(x) - (1 - x) * math.log2(1 - x)


def node_degrees(rate, n):
    """Variable-node degrees (sorted ``int64`` array of length ``n``) of the ``rate`` code."""
    lam = DISTRIBUTIONS[rate]
    degs = np.array(sorted(lam))
    frac = np.array([lam[d] / d for d in degs])
    frac /= frac.sum()                              # node perspective
    counts = np.floor(frac * n).astype(np.int64)
    rest = n - counts.sum()                         # largest remainders get the leftovers
    counts[np.argsort(-(frac * n - counts))[:rest]] += 1
    return np.repeat(degs, counts).astype(np.int64)


@numba.njit(cache=True)
def _peg(vdeg, m, seed, depth):                     # pragma: no cover (compiled)
    np.random.seed(seed)        # noqa: NPY002 (numba supports only the legacy API)
    n = vdeg.size
    edges = int(vdeg.sum())
    cap = 2 * (edges // m) + 16
    cadj = np.full((m, cap), -1, np.int64)
    cdeg = np.zeros(m, np.int64)
    vmax = int(vdeg.max())
    vadj = np.full((n, vmax), -1, np.int64)
    rows = np.empty(edges, np.int64)
    cols = np.empty(edges, np.int64)
    mark = np.zeros(m, np.int64)                    # BFS stamp per check
    vmark = np.zeros(n, np.int64)
    stamp = 0
    frontier = np.empty(m, np.int64)
    nxt = np.empty(m, np.int64)
    e = 0
    tie = np.random.random(m)   # noqa: NPY002 (numba) fixed random tie-break order
    for v in range(n):
        for j in range(vdeg[v]):
            stamp += 1
            if j == 0:
                cand_stamp = -1                     # every check is a candidate
            else:
                nf = 0
                for t in range(j):
                    c = vadj[v, t]
                    if mark[c] != stamp:
                        mark[c] = stamp
                        frontier[nf] = c
                        nf += 1
                vmark[v] = stamp
                reached = nf
                last_new = stamp
                lvl = 0
                while lvl < depth and reached < m:
                    nn = 0
                    for i in range(nf):
                        c = frontier[i]
                        for t in range(cdeg[c]):
                            u = cadj[c, t]
                            if vmark[u] == stamp:
                                continue
                            vmark[u] = stamp
                            for s in range(vdeg[u]):
                                c2 = vadj[u, s]
                                if c2 < 0:
                                    break
                                if mark[c2] != stamp:
                                    mark[c2] = stamp
                                    nxt[nn] = c2
                                    nn += 1
                    if nn == 0:
                        break
                    if reached + nn >= m:           # all reached: take the newest layer
                        for i in range(nn):
                            mark[nxt[i]] = -stamp
                        last_new = -stamp
                        reached = m
                        break
                    reached += nn
                    for i in range(nn):
                        frontier[i] = nxt[i]
                    nf = nn
                    lvl += 1
                cand_stamp = stamp if reached < m else last_new
            best = -1
            for c in range(m):
                if cdeg[c] >= cap:
                    continue
                if j > 0:
                    if cand_stamp == stamp:
                        if mark[c] == stamp:
                            continue
                    else:
                        if mark[c] != cand_stamp:
                            continue
                    skip = False
                    for t in range(j):
                        if vadj[v, t] == c:
                            skip = True
                    if skip:
                        continue
                if best < 0 or cdeg[c] < cdeg[best] or (cdeg[c] == cdeg[best]
                                                        and tie[c] < tie[best]):
                    best = c
            if best < 0:
                raise ValueError("PEG found no check (degrees too large for m)")
            cadj[best, cdeg[best]] = v
            cdeg[best] += 1
            vadj[v, j] = best
            rows[e] = best
            cols[e] = v
            e += 1
            tie[best] = np.random.random()  # noqa: NPY002 (numba)
    return rows, cols


def peg(var_degrees, m, *, seed=0, depth=2):
    """Progressive edge growth (module docstring); returns ``(check, variable)`` index arrays."""
    vdeg = np.asarray(var_degrees, dtype=np.int64)
    if vdeg.ndim != 1 or vdeg.size == 0 or vdeg.min() < 1:
        raise ValueError(f"var_degrees must be a non-empty 1-D array of degrees >= 1, "
                         f"not {var_degrees!r}")
    if not isinstance(m, int) or m < int(vdeg.max()):
        raise ValueError(f"m must be an integer >= the largest variable degree, not {m!r}")
    if not isinstance(depth, int) or depth < 0:
        raise ValueError(f"depth must be a non-negative integer, not {depth!r}")
    return _peg(vdeg, m, seed, depth)


def _default_cache():
    return Path(os.environ.get("COMBKEY_CACHE", Path.home() / ".cache" / "combkey")) / "ldpc"


_DEFAULT = object()


@functools.lru_cache(maxsize=32)
def _make_code(n, rate, seed, cache_dir):
    m = int(round((1 - rate) * n))
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{_CACHE_VERSION}-n{n}-r{rate:.3f}-s{seed}.npz"
        if path.exists():
            z = np.load(path)
            return sp.csr_matrix((np.ones(z["rows"].size, np.uint8), (z["rows"], z["cols"])),
                                 shape=(m, n))
    rows, cols = peg(node_degrees(rate, n), m, seed=seed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez_compressed(tmp, rows=rows.astype(np.int32), cols=cols.astype(np.int32))
        os.replace(tmp, path)
    return sp.csr_matrix((np.ones(rows.size, np.uint8), (rows, cols)), shape=(m, n))


def make_code(n, rate, *, seed=0, cache_dir=_DEFAULT):
    """Return the parity-check matrix of the ``rate`` code of length ``n`` (module docstring)."""
    if not isinstance(n, int) or n < 256:
        raise ValueError(f"n must be an integer >= 256, not {n!r}")
    if rate not in DISTRIBUTIONS:
        raise ValueError(f"rate must be one of {RATES}, not {rate!r}")
    if cache_dir is _DEFAULT:
        cache_dir = _default_cache()
    return _make_code(n, rate, seed, None if cache_dir is None else str(cache_dir))


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
    """Blind LDPC reconciliation over a family of PEG codes (module docstring)."""

    MAX_FILLER = 0.12

    def __init__(self, frame_bits=16384, rates=RATES, f_low=1.05, f_high_min=1.3, f_step=0.04,
                 max_iter=40, bp_method="product_sum", ms_scaling_factor=0.75,
                 schedule="parallel", seed=0):
        if not isinstance(frame_bits, int) or frame_bits < 256:
            raise ValueError(f"frame_bits must be an integer >= 256, not {frame_bits!r}")
        bad = [r for r in rates if r not in DISTRIBUTIONS]
        if not rates or bad:
            raise ValueError(f"rates must be a non-empty subset of {RATES}, not {rates!r}")
        if not 0.5 <= f_low <= f_high_min:
            raise ValueError(f"f_low must be in [0.5, f_high_min], not {f_low!r}")
        if not 0 < f_step <= 1:
            raise ValueError(f"f_step must be in (0, 1], not {f_step!r}")
        if not isinstance(max_iter, int) or max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, not {max_iter!r}")
        if bp_method not in ("product_sum", "minimum_sum"):
            raise ValueError(f"bp_method must be 'product_sum' or 'minimum_sum', "
                             f"not {bp_method!r}")
        if schedule not in ("serial", "parallel"):
            raise ValueError(f"schedule must be 'serial' or 'parallel', not {schedule!r}")
        self.n = frame_bits
        self.rates = tuple(sorted(rates, reverse=True))
        self.f_low = f_low
        self.f_high_min = f_high_min
        self.f_step = f_step
        self.max_iter = max_iter
        self.bp_method = bp_method
        self.ms_scaling_factor = ms_scaling_factor
        self.schedule = schedule
        self.seed = seed
        self._decoders = {}

    # -------------------------------------------------------------- code selection
    def layout(self, qber):
        """Return ``(rate, m, d)``: code, checks and filler bits per frame for a QBER."""
        h = h2(min(max(qber, 1e-4), 0.45))
        n = self.n
        choice = None
        for rate in self.rates:                     # fewest checks first
            m = int(round((1 - rate) * n))
            d = int(math.ceil((m - self.f_low * n * h) / (1 - self.f_low * h)))
            d = max(d, 0)
            if d > self.MAX_FILLER * n:
                d = int(self.MAX_FILLER * n)
            if m < self.f_high_min * (n - d) * h:
                continue
            choice = (rate, m, d)
            break
        if choice is None:                          # QBER beyond the family: lowest rate
            rate = self.rates[-1]
            choice = (rate, int(round((1 - rate) * n)), 0)
        return choice

    def _decoder(self, rate):
        got = self._decoders.get(rate)
        if got is None:
            H = make_code(self.n, rate, seed=self.seed)
            dec = ldpc.BpDecoder(H, error_rate=0.01, max_iter=self.max_iter,
                                 bp_method=self.bp_method, schedule=self.schedule,
                                 ms_scaling_factor=self.ms_scaling_factor,
                                 input_vector_type="syndrome")
            got = self._decoders[rate] = (H, dec)
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
        if total == 0:
            return res
        rate, m, d = self.layout(qber_hint)
        H, dec = self._decoder(rate)
        n = self.n
        k = n - d
        # public layout: filler positions (in reveal order) and key positions, same every frame
        filler = np.random.default_rng([self.seed, n, d]).choice(n, d, replace=False)
        keypos = np.setdiff1d(np.arange(n), filler)
        p_key = min(max(qber_hint, 1e-4), 0.45)
        step = max(1, int(math.ceil(self.f_step * k * h2(p_key))))
        for start in range(0, total, k):
            chunk = slice(start, min(start + k, total))
            kb = chunk.stop - chunk.start
            res.frames += 1
            res.rates_used[rate] = res.rates_used.get(rate, 0) + 1
            # --- Alice: frame = key bits + random filler (short frames padded with shortened 0s)
            xa = np.zeros(n, np.uint8)
            xa[keypos[:kb]] = a[chunk]
            xa[filler] = rng.integers(0, 2, d, dtype=np.uint8)
            syn = (H @ xa).astype(np.uint8) & 1
            channel.send(alice, bob, topic + ".syndrome", Bits(syn))
            # --- Bob
            s_a = channel.recv(bob, topic + ".syndrome").array
            xb = np.zeros(n, np.uint8)
            xb[keypos[:kb]] = b[chunk]
            probs = np.full(n, p_key)
            probs[keypos[kb:]] = 1e-12              # padding: publicly known zeros (shortened)
            probs[filler] = 0.5
            revealed = 0
            ok = False
            while True:
                res.attempts += 1
                target = s_a ^ ((H @ xb).astype(np.uint8) & 1)
                dec.update_channel_probs(probs)
                e = dec.decode(target)
                cand = xb ^ e
                if dec.converge and np.array_equal((H @ cand).astype(np.uint8) & 1, s_a):
                    ok = True
                    break
                if revealed >= d:
                    break
                # Bob asks for the next filler values; Alice reveals them.
                channel.send(bob, alice, topic + ".nack", True)
                channel.recv(alice, topic + ".nack")
                idx = filler[revealed:revealed + step]
                channel.send(alice, bob, topic + ".reveal", Bits(xa[idx]))
                xb[idx] = channel.recv(bob, topic + ".reveal").array
                probs[idx] = 1e-12
                revealed += idx.size
                res.frames_retried += revealed == idx.size
            punct = d - revealed
            if ok:
                channel.send(bob, alice, topic + ".ack", True)
                channel.recv(alice, topic + ".ack")
                out[chunk] = cand[keypos[:kb]]
                res.leak_bits += m - punct
            else:
                channel.send(bob, alice, topic + ".clear_request", True)
                channel.recv(alice, topic + ".clear_request")
                channel.send(alice, bob, topic + ".clear", Bits(a[chunk]))
                out[chunk] = channel.recv(bob, topic + ".clear").array
                res.leak_bits += m - punct + kb
                res.frames_clear += 1
            res.errors_corrected += int(np.count_nonzero(out[chunk] != b[chunk]))
        return res
