"""``combkey session``: a key session end to end (simulated link), per channel and in total.

Usage
-----
``combkey session --sim --protocol sns|mdi --distance-km L --channels C --pulses N
[--config FILE.toml] [--json] [--demo]`` plus one flag per key-rate field (``--misalignment-error
0.03``, ``--detector-efficiency 0.6``, ``--dark-count-probability``, ``--crosstalk-cps``,
``--clock-hz``, ``--fiber-loss-db-per-km``, ``--epsilon``, ``--aopp/--no-aopp``,
``--intensities mu_z=0.5,mu_1=0.07,mu_2=0.55``, ``--probabilities p_z=...``, ...; the names
of ``docs/keyrate.md``) and the simulator / distillation options ``--mode fast|exact``,
``--seed``, ``--phase-drift-rad-per-ms``, ``--ref-period-s``, ``--loop-residual-rad``,
``--estimate-noise-rad``, ``--phase-slices``, ``--ec cascade|ldpc``, ``--tag-bits``,
``--keystore PATH`` (SQLite; default in memory), ``--workers N`` (processes, default 2).

Precedence: built-in defaults < ``--demo`` preset < TOML file < flags. TOML layout: the
key-rate fields at top level (``protocol``, ``distance_km``, ``pulses``, ...),
``[intensities]``, ``[probabilities]``, ``[sim]`` (``mode``, ``seed``, the phase-model fields,
``phase_slices``), ``[distill]`` (``ec_method``, ``tag_bits``, ``cascade_passes``) and
``[channel_overrides.K]`` (key-rate fields that differ on channel K, e.g. a worse
``misalignment_error``). Unknown keys and bad values are errors that name the field.
Without ``intensities`` / ``probabilities`` they are optimised with
:func:`combkey.keyrate.optimize` for the base link.

Python API: ``SessionConfig.from_sources(demo=False, toml=None, flags=None)`` and
``run_session(cfg, progress=None) -> dict`` (the JSON document: ``keys_match``,
``final_key_bits``, ``sifted_bits``, ``qber_z``, ``qber_x``, ``ec_efficiency``,
``secret_key_rate_bps``, ``aborted_channels``, ``verification_failures``, ``qber_ec``,
``channels`` (per
channel the same figures, :meth:`combkey.distill.pipeline.ChannelResult.summary`), ``wall_s``,
``simulated_s``). Bit rates are bits per second of the simulated clock
(``final bits * clock_hz / pulses``, summed over channels). ``qber_z`` is the Z-window error
rate of the sifted bits (SNS with AOPP: estimated from the AOPP discards), ``qber_ec`` the error
rate of the reconciled bits (after AOPP), ``qber_x`` the X-window error rate, all averaged over
channels weighted by their bits; ``ec_efficiency`` is total leak over total ``n h(qber_ec)``.

The demo preset (``--demo``) is a seed-000-like link: SNS with AOPP, 16 channels, 201.1 km of
0.16 dB/km fibre, detector efficiency 0.7, dark count 1e-9 per window, crosstalk 35 cps,
1 GHz clock, X-window misalignment 0.041 (gives the reported 4.3 % X QBER with the model),
``1e9`` pulses per channel (1 s), epsilon 1e-10, intensities optimised by the key-rate engine.
"""
from __future__ import annotations

import concurrent.futures as cf
import json
import math
import time
import uuid
from dataclasses import dataclass, field

import click
import numpy as np
import tomllib

__all__ = ["SessionConfig", "SessionError", "run_session", "session", "DEMO_PRESET",
           "build_link"]

DEMO_PRESET = {
    "protocol": "sns", "distance_km": 201.1, "fiber_loss_db_per_km": 0.16,
    "detector_efficiency": 0.7, "dark_count_probability": 1e-9, "misalignment_error": 0.041,
    "pulses": 1e9, "clock_hz": 1e9, "epsilon": 1e-10, "channels": 16, "crosstalk_cps": 35.0,
    "aopp": True,
}
#: numeric key-rate fields exposed as flags (name -> click type)
LINK_FLAGS = {
    "distance_km": float, "fiber_loss_db_per_km": float, "detector_efficiency": float,
    "dark_count_probability": float, "misalignment_error": float,
    "misalignment_error_x": float, "ec_efficiency": float, "pulses": float, "clock_hz": float,
    "epsilon": float, "channels": int, "crosstalk_cps": float, "detection_window_s": float,
    "x_postselect_fraction": float, "eps_cor": float, "eps_pa": float, "eps_hat": float,
}
SIM_FIELDS = {"mode": str, "seed": int, "phase_drift_rad_per_ms": float, "ref_period_s": float,
              "loop_residual_rad": float, "estimate_noise_rad": float, "phase_slices": int}
SIM_DEFAULTS = {"mode": "fast", "seed": 0, "phase_drift_rad_per_ms": 4.1, "ref_period_s": 1e-5,
                "loop_residual_rad": 0.05, "estimate_noise_rad": 0.05, "phase_slices": 16}
DISTILL_FIELDS = {"ec_method": str, "tag_bits": int, "cascade_passes": int}
DISTILL_DEFAULTS = {"ec_method": "cascade", "tag_bits": 64, "cascade_passes": 10}
_TOP_EXTRA = {"intensities", "probabilities", "sim", "distill", "channel_overrides"}


class SessionError(click.ClickException):
    """Invalid session configuration (the message names the field)."""


@dataclass
class SessionConfig:
    """Validated session configuration (module docstring)."""

    link: dict
    sim: dict = field(default_factory=lambda: dict(SIM_DEFAULTS))
    distill: dict = field(default_factory=lambda: dict(DISTILL_DEFAULTS))
    overrides: dict = field(default_factory=dict)
    keystore: str = ":memory:"
    workers: int = 2
    fault_channels: tuple = ()

    @classmethod
    def from_sources(cls, *, demo=False, toml=None, flags=None, keystore=":memory:", workers=2,
                     fault_channels=()):
        """Merge defaults < demo < TOML (a path or a dict) < flags and validate."""
        from .keyrate import LinkParams, ParamError

        link = dict(DEMO_PRESET) if demo else {}
        sim = dict(SIM_DEFAULTS)
        dist = dict(DISTILL_DEFAULTS)
        overrides = {}
        if toml is not None:
            doc = toml
            if not isinstance(toml, dict):
                try:
                    with open(toml, "rb") as fh:
                        doc = tomllib.load(fh)
                except OSError as exc:
                    raise SessionError(f"config file {toml!r} cannot be read: {exc}") from exc
                except tomllib.TOMLDecodeError as exc:
                    raise SessionError(f"config file {toml!r} is not valid TOML: {exc}") from exc
            for k, v in doc.items():
                if k == "sim":
                    sim.update(_check_table(v, SIM_FIELDS, "sim"))
                elif k == "distill":
                    dist.update(_check_table(v, DISTILL_FIELDS, "distill"))
                elif k == "channel_overrides":
                    if not isinstance(v, dict):
                        raise SessionError(f"channel_overrides must be a table, not {v!r}")
                    for ch, tab in v.items():
                        if not str(ch).isdigit():
                            raise SessionError(f"channel_overrides.{ch} must be named by a "
                                               f"channel number, not {ch!r}")
                        if not isinstance(tab, dict):
                            raise SessionError(f"channel_overrides.{ch} must be a table")
                        overrides[int(ch)] = dict(tab)
                else:
                    link[k] = v
        for k, v in (flags or {}).items():
            if v is None:
                continue
            if k in SIM_FIELDS:
                sim[k] = v
            elif k in DISTILL_FIELDS:
                dist[k] = v
            else:
                link[k] = v
        protocol = link.get("protocol")
        if protocol not in ("sns", "mdi"):
            raise SessionError(f"protocol must be 'sns' or 'mdi', not {protocol!r}")
        try:
            base = LinkParams.from_dict(link, protocol)
            for ch, tab in overrides.items():
                if ch >= base.channels:
                    raise SessionError(f"channel_overrides.{ch} names a channel beyond "
                                       f"channels = {base.channels}")
                LinkParams.from_dict({**link, **tab}, protocol)
        except ParamError as exc:
            raise SessionError(str(exc)) from exc
        if base.pulses != int(base.pulses):
            raise SessionError(f"pulses must be an integer, not {base.pulses!r}")
        if sim["mode"] not in ("fast", "exact"):
            raise SessionError(f"sim.mode must be 'fast' or 'exact', not {sim['mode']!r}")
        if sim["mode"] == "exact" and base.pulses > 2e8:
            raise SessionError(f"pulses must be <= 2e8 in exact mode (slot by slot), "
                               f"not {base.pulses:g}")
        m = sim["phase_slices"]
        if not (isinstance(m, int) and m >= 1 and m & (m - 1) == 0 and m <= 256):
            raise SessionError(f"sim.phase_slices must be a power of two in 1..256, not {m!r}")
        if dist["ec_method"] not in ("cascade", "ldpc"):
            raise SessionError(f"distill.ec_method must be 'cascade' or 'ldpc', "
                               f"not {dist['ec_method']!r}")
        if not (isinstance(workers, int) and workers >= 1):
            raise SessionError(f"workers must be a positive integer, not {workers!r}")
        try:
            _phase_model(sim)
        except ValueError as exc:
            raise SessionError(f"sim.{exc}") from exc
        return cls(link=link, sim=sim, distill=dist, overrides=overrides, keystore=keystore,
                   workers=workers, fault_channels=tuple(fault_channels))


def _check_table(tab, fields, name):
    if not isinstance(tab, dict):
        raise SessionError(f"{name} must be a table, not {tab!r}")
    for k, v in tab.items():
        if k not in fields:
            raise SessionError(f"{name}.{k} is not a known field (known: {', '.join(fields)})")
        t = fields[k]
        if t is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if isinstance(v, bool) or not isinstance(v, t):
            raise SessionError(f"{name}.{k} must be a {t.__name__}, not {v!r}")
    return dict(tab)


def _phase_model(sim):
    from .sim.session import PhaseModel
    return PhaseModel(drift_rad_per_ms=sim["phase_drift_rad_per_ms"],
                      ref_period_s=sim["ref_period_s"],
                      loop_residual_rad=sim["loop_residual_rad"],
                      estimate_noise_rad=sim["estimate_noise_rad"])


def build_link(params, intensities, probabilities, sim, class_probs=None):
    """Return the :class:`combkey.sim.session.SimLink` of ``params`` (one channel)."""
    from .keyrate.mdi import mdi_class_intensities, mdi_class_probabilities
    from .keyrate.sns import sns_class_intensities, sns_class_probabilities
    from .sim.session import SimLink

    if params.protocol == "sns":
        cp = class_probs or sns_class_probabilities(probabilities)
        cm = sns_class_intensities(intensities)
    else:
        cp = class_probs or mdi_class_probabilities(probabilities)
        cm = mdi_class_intensities(intensities)
    total = sum(cp.values())
    cp = {k: v / total for k, v in cp.items()}
    return SimLink(protocol=params.protocol, eta_arm=params.eta_arm, p_noise=params.dark_total,
                   misalignment=params.misalignment_error,
                   misalignment_x=params.misalignment_error_x, class_probs=cp, class_mu=cm,
                   phase_slices=sim["phase_slices"],
                   postselect_fraction=params.x_postselect_fraction, phase=_phase_model(sim),
                   clock_hz=params.clock_hz)


def pattern_settings(params, probabilities, key, phase_slices):
    """Return ``(settings callable, realised class probabilities)`` from the pattern API."""
    from .pattern import CLASS_NAMES, PatternConfig, regenerate
    from .sim.session import MDI_CLASSES, SNS_CLASSES

    if params.protocol == "sns":
        px = 1 - probabilities["p_z"]
        p0 = 1 - probabilities["p_z"] - probabilities["p_1"] - probabilities["p_2"]
        cfg = PatternConfig.from_dict({
            "protocol": "sns", "p_z": probabilities["p_z"], "eps": probabilities["epsilon_send"],
            "p_x0": p0 / px, "p_x1": probabilities["p_1"] / px,
            "p_x2": 1 - p0 / px - probabilities["p_1"] / px, "phase_slices": phase_slices})
        names = SNS_CLASSES
    else:
        cfg = PatternConfig.from_dict({
            "protocol": "mdi", **{k: probabilities[k] for k in ("p_z", "p_y", "p_x", "p_o")},
            "phase_slices": phase_slices})
        names = MDI_CLASSES
    gate = CLASS_NAMES[params.protocol]
    lut = np.full(8, -1, np.int8)
    for code, name in enumerate(gate):
        if name in names:
            lut[code] = names.index(name)

    def settings(first_slot, count):
        arr = regenerate(cfg, key, int(first_slot), int(count))
        return {"cls": lut[arr["cls"]], "bit": arr["bit"], "phase_slice": arr["phase_slice"]}
    return settings, cfg.realised()


# ------------------------------------------------------------------------------- one channel
def _channel_params(cfg, ch):
    from .keyrate import LinkParams
    d = {**cfg.link, **cfg.overrides.get(ch, {})}
    return LinkParams.from_dict(d, cfg.link["protocol"])


def run_channel(cfg, ch, intensities, probabilities):
    """Simulate and distil channel ``ch``; return ``(summary dict, key_alice, key_bob, eps)``."""
    from .distill.channel import ClassicalChannel
    from .distill.pipeline import DistillConfig, distill_channel
    from .sim.session import simulate_exact, simulate_fast

    params = _channel_params(cfg, ch)
    rng = np.random.default_rng([cfg.sim["seed"], ch])
    pulses = int(params.pulses)
    t0 = time.perf_counter()
    if cfg.sim["mode"] == "fast":
        link = build_link(params, intensities, probabilities, cfg.sim)
        rec = simulate_fast(link, pulses, rng, channel=ch)
    else:
        ka = rng.bytes(10)
        kb = rng.bytes(10)
        sa, realised = pattern_settings(params, probabilities, ka, cfg.sim["phase_slices"])
        sb, _ = pattern_settings(params, probabilities, kb, cfg.sim["phase_slices"])
        link = build_link(params, intensities, probabilities, cfg.sim, class_probs=realised)
        rec = simulate_exact(link, pulses, rng, sa, sb, channel=ch)
    t_sim = time.perf_counter() - t0
    dcfg = DistillConfig(ec_method=cfg.distill["ec_method"], tag_bits=cfg.distill["tag_bits"],
                         cascade_passes=cfg.distill["cascade_passes"],
                         fault="flip_after_ec" if ch in cfg.fault_channels else None)
    chan = ClassicalChannel()
    res = distill_channel(rec, params, intensities, probabilities, chan, rng, dcfg)
    summary = res.summary(params.clock_hz)
    summary["sim_s"] = round(t_sim, 3)
    summary["distill_s"] = round(time.perf_counter() - t0 - t_sim, 3)
    summary["events"] = int(rec.events.size)
    if res.key_result is not None:
        summary["key_length_bound"] = int(res.key_result.key_bits)
    return summary, res.key_alice, res.key_bob, res.epsilon


def _worker(args):
    cfg, ch, i, p = args
    return ch, run_channel(cfg, ch, i, p)


def resolve_protocol_parameters(cfg):
    """Return ``(intensities, probabilities)``: given, or optimised for the base link."""
    from .keyrate import LinkParams, optimize

    base = LinkParams.from_dict(cfg.link, cfg.link["protocol"])
    if base.intensities is not None and base.probabilities is not None:
        return dict(base.intensities), dict(base.probabilities)
    o = optimize(base, seed=0, maxiter=10)
    ints = dict(base.intensities) if base.intensities is not None else dict(o.intensities)
    probs = dict(base.probabilities) if base.probabilities is not None else dict(o.probabilities)
    return ({k: float(v) for k, v in ints.items()}, {k: float(v) for k, v in probs.items()})


def run_session(cfg, progress=None):
    """Run every channel, store the keys, return the JSON document (module docstring)."""
    from .distill.keystore import KeyStore, utc_now
    from .keyrate import LinkParams

    t0 = time.perf_counter()
    start = utc_now()
    sid = uuid.uuid4().hex[:12]
    base = LinkParams.from_dict(cfg.link, cfg.link["protocol"])
    ints, probs = resolve_protocol_parameters(cfg)
    jobs = [(cfg, ch, ints, probs) for ch in range(base.channels)]
    results = {}
    if cfg.workers > 1 and len(jobs) > 1:
        with cf.ProcessPoolExecutor(max_workers=cfg.workers) as ex:
            for ch, out in ex.map(_worker, jobs):
                results[ch] = out
                if progress:
                    progress(ch)
    else:
        for job in jobs:
            ch, out = _worker(job)
            results[ch] = out
            if progress:
                progress(ch)
    store = KeyStore(cfg.keystore)
    channels = []
    for ch in range(base.channels):
        summary, ka, kb, eps = results[ch]
        if ka.size:
            summary["keystore_rows"] = [
                store.append(sid, "alice", ch, 0, ka, eps, start),
                store.append(sid, "bob", ch, 0, kb, eps, start)]
        channels.append(summary)
    stored = store.total_bits()
    store.close()
    ok = [c for c in channels if not c["aborted"]]
    sifted = sum(c["sifted_bits"] for c in channels)
    ec_bits = sum(c["ec_bits"] for c in ok)

    def wavg(key, weight):
        pairs = [(c[key], c[weight]) for c in channels if c[key] is not None and c[weight]]
        w = sum(p[1] for p in pairs)
        return sum(p[0] * p[1] for p in pairs) / w if w else None

    from .distill.ec import h2
    ent = sum(c["ec_bits"] * h2(c["qber_ec"]) for c in ok if c["qber_ec"] is not None)
    leak = sum(c["ec_leak_bits"] for c in ok)
    doc = {
        "session_id": sid, "protocol": base.protocol, "distance_km": base.distance_km,
        "channels_count": base.channels, "pulses_per_channel": int(base.pulses),
        "clock_hz": base.clock_hz, "simulated_s": base.pulses / base.clock_hz,
        "mode": cfg.sim["mode"], "seed": cfg.sim["seed"], "aopp": base.aopp,
        "ec_method": cfg.distill["ec_method"], "intensities": ints, "probabilities": probs,
        "keys_match": all(c["keys_match"] for c in channels),
        "final_key_bits": sum(c["final_key_bits"] for c in channels),
        "sifted_bits": sifted, "ec_bits": ec_bits,
        "qber_z": wavg("qber_z", "sifted_bits"), "qber_ec": wavg("qber_ec", "ec_bits"),
        "qber_x": wavg("qber_x", "sifted_bits"),
        "ec_efficiency": leak / ent if ent > 0 else None,
        "secret_key_rate_bps": sum(c["secret_key_rate_bps"] for c in channels),
        "aborted_channels": [c["channel"] for c in channels if c["aborted"]],
        "verification_failures": sum(1 for c in channels if c["verification_failed"]),
        "keystore": cfg.keystore, "keystore_bits": stored,
        "wall_s": round(time.perf_counter() - t0, 3), "channels": channels,
    }
    return doc


# ------------------------------------------------------------------------------- CLI
def _parse_kv(text, name):
    out = {}
    for part in text.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise SessionError(f"{name} must be key=value pairs separated by commas, "
                               f"not {text!r}")
        k, v = part.split("=", 1)
        try:
            out[k.strip()] = float(v)
        except ValueError as exc:
            raise SessionError(f"{name}.{k.strip()} must be a number, not {v!r}") from exc
    return out


def print_table(doc, console=None):
    """Print the per-channel and total summary table."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    if console.width < 118 and not console.is_terminal:
        console = Console(width=118)
    t = Table(title=f"combkey session {doc['session_id']}: {doc['protocol'].upper()} "
              f"{doc['distance_km']:g} km, {doc['channels_count']} ch x "
              f"{doc['pulses_per_channel']:.3g} pulses ({doc['simulated_s']:.3g} s simulated)")
    for col in ("ch", "sifted bits", "QBER Z", "QBER X", "QBER EC", "f", "final key bits",
                "SKR bit/s", "status"):
        t.add_column(col, justify="right", no_wrap=True)

    def pct(x):
        return "-" if x is None else f"{100 * x:.3g}%"

    def fl(x):
        return "-" if x is None else f"{x:.3f}"
    notes = []
    for c in doc["channels"]:
        status = "ok"
        if c["aborted"]:
            status = "ABORT (verify)" if c["verification_failed"] else "ABORT"
            notes.append(f"channel {c['channel']}: {c['abort_reason']}")
        t.add_row(str(c["channel"]), f"{c['sifted_bits']:,}", pct(c["qber_z"]),
                  pct(c["qber_x"]), pct(c["qber_ec"]), fl(c["ec_efficiency"]),
                  f"{c['final_key_bits']:,}", f"{c['secret_key_rate_bps']:,.0f}", status)
    t.add_row("total", f"{doc['sifted_bits']:,}", pct(doc["qber_z"]), pct(doc["qber_x"]),
              pct(doc["qber_ec"]), fl(doc["ec_efficiency"]), f"{doc['final_key_bits']:,}",
              f"{doc['secret_key_rate_bps']:,.0f}",
              "keys match" if doc["keys_match"] else "KEYS DIFFER", style="bold")
    console.print(t)
    for n in notes:
        console.print(n)
    console.print(f"aborted channels: {doc['aborted_channels'] or 'none'}; verification "
                  f"failures: {doc['verification_failures']}; wall time {doc['wall_s']:.1f} s; "
                  f"key store {doc['keystore']} ({doc['keystore_bits']:,} bits)")


def _link_options(f):
    for name, typ in reversed(LINK_FLAGS.items()):
        f = click.option(f"--{name.replace('_', '-')}", name, type=typ, default=None,
                         help=f"key-rate field {name} (docs/keyrate.md)")(f)
    return f


@click.command()
@click.option("--sim", "use_sim", is_flag=True, help="Run on the simulated link (required).")
@click.option("--protocol", type=click.Choice(["sns", "mdi"]), default=None)
@click.option("--config", "config", type=click.Path(dir_okay=False), default=None,
              help="TOML file (see the module docstring).")
@click.option("--demo", is_flag=True, help="Seed-000-like preset: SNS+AOPP, 16 ch, 201.1 km.")
@click.option("--json", "as_json", is_flag=True, help="Print the session as JSON.")
@click.option("--aopp/--no-aopp", default=None, help="SNS: actively odd-parity pairing.")
@click.option("--finite/--asymptotic", default=None, help="Finite-key analysis (default).")
@click.option("--intensities", default=None, help="e.g. mu_z=0.5,mu_1=0.07,mu_2=0.55")
@click.option("--probabilities", default=None, help="e.g. p_z=0.76,epsilon_send=0.28,...")
@click.option("--mode", type=click.Choice(["fast", "exact"]), default=None,
              help="Simulator: class-wise sampling (fast) or slot by slot (exact).")
@click.option("--seed", type=int, default=None, help="Simulation seed.")
@click.option("--phase-drift-rad-per-ms", type=float, default=None)
@click.option("--ref-period-s", type=float, default=None)
@click.option("--loop-residual-rad", type=float, default=None)
@click.option("--estimate-noise-rad", type=float, default=None)
@click.option("--phase-slices", type=int, default=None)
@click.option("--ec", "ec_method", type=click.Choice(["cascade", "ldpc"]), default=None)
@click.option("--tag-bits", type=int, default=None, help="Verification hash length.")
@click.option("--keystore", default=":memory:", help="SQLite key store path.")
@click.option("--workers", type=int, default=2, help="Processes (channels in parallel).")
@_link_options
def session(use_sim, protocol, config, demo, as_json, intensities, probabilities, keystore,
            workers, **flags):
    """Run a key session and print per-channel and total figures (bit/s of the sim clock)."""
    if not use_sim:
        raise SessionError("only --sim is supported: sessions on boards need the device link")
    flags["protocol"] = protocol
    if intensities is not None:
        flags["intensities"] = _parse_kv(intensities, "intensities")
    if probabilities is not None:
        flags["probabilities"] = _parse_kv(probabilities, "probabilities")
    if flags.get("channels") is not None and flags["channels"] < 1:
        raise SessionError(f"channels must be >= 1, not {flags['channels']!r}")
    cfg = SessionConfig.from_sources(demo=demo, toml=config, flags=flags, keystore=keystore,
                                     workers=workers)
    n_ch = int(cfg.link.get("channels", 1))
    if as_json:
        doc = run_session(cfg)
        click.echo(json.dumps(doc, indent=2, default=_json_default))
        return
    from rich.progress import Progress
    with Progress(transient=True) as prog:
        task = prog.add_task("channels", total=n_ch)
        doc = run_session(cfg, progress=lambda ch: prog.advance(task))
    print_table(doc)
    if not doc["keys_match"]:
        raise SystemExit(1)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        f = float(o)
        return None if math.isnan(f) else f
    if isinstance(o, np.bool_):
        return bool(o)
    return str(o)


# ------------------------------------------------------------------------------- benchmark
def bench_run(quick=False):
    """``combkey bench session``: fast-simulator pulses/s and (full run) the demo session.

    Rows: the fast simulator on a seed-000-like SNS channel (1e9 pulses; quick 2e8) and on a
    seed-002-like MDI channel (30 dB at 100 MHz; 1e12 pulses = 2.8 h, about 3 GB of events;
    quick 3e10; the seed runs 3e12), each with
    its effective events and simulated pulses per second of wall time. Without ``--quick`` the
    demo session (16 channels, 2 workers) is also run and its wall time, total key and SKR are
    reported.
    """
    from .keyrate import LinkParams
    from .sim.session import simulate_fast

    rows = []
    cfg = SessionConfig.from_sources(demo=True)
    ints, probs = resolve_protocol_parameters(cfg)
    params = LinkParams.from_dict(cfg.link, "sns")
    n = int(2e8 if quick else 1e9)
    link = build_link(params, ints, probs, dict(SIM_DEFAULTS))
    t0 = time.perf_counter()
    rec = simulate_fast(link, n, np.random.default_rng(0))
    dt = time.perf_counter() - t0
    rows.append({"case": "SNS seed-000-like 201.1 km", "pulses": n, "events": rec.events.size,
                 "seconds": round(dt, 3), "pulses_per_s": n / dt})
    mi = {"mu_z": 0.636, "mu_y": 0.204, "mu_x": 0.054}
    mp = {"p_z": 0.754, "p_y": 0.036, "p_x": 0.188, "p_o": 0.022}
    mparams = LinkParams.from_dict(dict(
        distance_km=150.0, fiber_loss_db_per_km=0.2, detector_efficiency=0.6,
        dark_count_probability=1e-8, misalignment_error=0.01, pulses=3e12, clock_hz=1e8,
        intensities=mi, probabilities=mp), "mdi")
    n = int(3e10 if quick else 1e12)
    link = build_link(mparams, mi, mp, dict(SIM_DEFAULTS))
    t0 = time.perf_counter()
    rec = simulate_fast(link, n, np.random.default_rng(1))
    dt = time.perf_counter() - t0
    rows.append({"case": "MDI seed-002-like 30 dB", "pulses": n, "events": rec.events.size,
                 "seconds": round(dt, 3), "pulses_per_s": n / dt})
    out = {"sns_pulses_per_s": rows[0]["pulses_per_s"],
           "mdi_pulses_per_s": rows[1]["pulses_per_s"], "rows": rows}
    if not quick:
        doc = run_session(cfg)
        out.update(demo_wall_s=doc["wall_s"], demo_final_key_bits=doc["final_key_bits"],
                   demo_skr_bps=doc["secret_key_rate_bps"], demo_keys_match=doc["keys_match"],
                   demo_aborted=len(doc["aborted_channels"]))
    return out
