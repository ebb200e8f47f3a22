"""``combkey bench distill [--json] [--quick]``: error correction, PA and distillation figures.

Rows (``kind`` column):

* ``ec``: for QBER 1, 2, 3, 5 % and both methods (``cascade``, ``ldpc``): realised efficiency
  ``f = leak / (n h(E))`` (goal <= 1.10, printed beside it, never asserted), frame error rate
  (LDPC: frames that exhausted the blind steps and were sent in the clear), and throughput in
  sifted Mbit/s on one core (wall time of the whole protocol, both ends in one process).
* ``pa``: Toeplitz privacy amplification (FFT) of an ``n``-bit block to ``n / 2`` bits, for
  ``n`` = 1e6, 1e7 and (without ``--quick``) 1e8: Mbit/s of input.
* ``e2e``: one seed-000-like channel (SNS + AOPP, 201.1 km, 1e9 pulses; ``--quick`` 2e8) through
  the whole distillation: sifted Mbit/s, reconciled bits, final bits, seconds.
"""
from __future__ import annotations

import time

import numpy as np

from .cascade import cascade_reconcile
from .channel import ClassicalChannel
from .ec import Reconciler
from .toeplitz import seed_length, toeplitz_hash


def _ec_rows(quick):
    rows = []
    rng = np.random.default_rng(1)
    for q in (0.01, 0.02, 0.03, 0.05):
        n = 200_000 if quick else 1_000_000
        a = rng.integers(0, 2, n, dtype=np.uint8)
        b = a ^ (rng.random(n) < q).astype(np.uint8)
        t0 = time.perf_counter()
        r = cascade_reconcile(a, b, q, ClassicalChannel(), passes=10, rng=rng)
        dt = time.perf_counter() - t0
        rows.append({"kind": "ec", "method": "cascade", "qber": q, "bits": n,
                     "f": round(r.efficiency, 4), "goal_f": 1.10, "fer": 0.0,
                     "residual_errors": int(np.count_nonzero(r.bob_corrected != a)),
                     "mbit_s": round(n / dt / 1e6, 3)})
        rec = Reconciler(frame_bits=4096 if quick else 16384)
        rate, m, d = rec.layout(q)
        rec._decoder(rate)   # code build/load and decoder set-up are not reconciliation time
        frames = 3 if quick else 6
        n2 = frames * (rec.n - d)
        a2, b2 = a[:n2], b[:n2]
        t0 = time.perf_counter()
        r2 = rec.reconcile(a2, b2, q, ClassicalChannel(), rng=rng)
        dt = time.perf_counter() - t0
        rows.append({"kind": "ec", "method": f"ldpc n={rec.n} rate={rate}", "qber": q,
                     "bits": n2,
                     "f": round(r2.efficiency, 4), "goal_f": 1.10,
                     "fer": round(r2.frame_error_rate, 4),
                     "residual_errors": int(np.count_nonzero(r2.bob_corrected != a2)),
                     "mbit_s": round(n2 / dt / 1e6, 3)})
    return rows


def _pa_rows(quick):
    rows = []
    rng = np.random.default_rng(2)
    sizes = (10 ** 6, 10 ** 7) if quick else (10 ** 6, 10 ** 7, 10 ** 8)
    for n in sizes:
        x = rng.integers(0, 2, n, dtype=np.uint8)
        m = n // 2
        s = rng.integers(0, 2, seed_length(n, m), dtype=np.uint8)
        t0 = time.perf_counter()
        toeplitz_hash(x, s, m)
        dt = time.perf_counter() - t0
        rows.append({"kind": "pa", "bits": n, "out_bits": m, "seconds": round(dt, 3),
                     "mbit_s": round(n / dt / 1e6, 2)})
        del x, s
    return rows


def _e2e_row(quick):
    from ..keyrate import LinkParams
    from ..session import (
        DEMO_PRESET,
        SIM_DEFAULTS,
        SessionConfig,
        build_link,
        resolve_protocol_parameters,
    )
    from ..sim.session import simulate_fast
    from .pipeline import DistillConfig, distill_channel

    pulses = 2e8 if quick else 1e9
    cfg = SessionConfig.from_sources(toml=dict(DEMO_PRESET, pulses=pulses, channels=1))
    ints, probs = resolve_protocol_parameters(cfg)
    params = LinkParams.from_dict(cfg.link, "sns")
    rng = np.random.default_rng(3)
    rec = simulate_fast(build_link(params, ints, probs, dict(SIM_DEFAULTS)), int(pulses), rng)
    t0 = time.perf_counter()
    res = distill_channel(rec, params, ints, probs, ClassicalChannel(), rng, DistillConfig())
    dt = time.perf_counter() - t0
    return {"kind": "e2e", "method": "sns+aopp cascade", "bits": res.sifted_bits,
            "reconciled_bits": res.ec_bits, "final_bits": res.final_key_bits,
            "f": round(res.ec_efficiency, 4), "seconds": round(dt, 3),
            "mbit_s": round(res.sifted_bits / dt / 1e6, 3)}


def run(quick=False):
    """Measure and return the figures (module docstring)."""
    rows = _ec_rows(quick) + _pa_rows(quick) + [_e2e_row(quick)]
    casc = [r for r in rows if r.get("method") == "cascade"]
    return {
        "cascade_f_max": max(r["f"] for r in casc),
        "cascade_mbit_s_min": min(r["mbit_s"] for r in casc),
        "e2e_sifted_mbit_s": rows[-1]["mbit_s"],
        "rows": rows,
    }
