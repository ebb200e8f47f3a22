"""``combkey bench boards [--json] [--quick]``: fmax and utilisation per board x node.

Builds every board x node combination with :func:`combkey.boards.build.run_build` (place and
route with the YoWASP tools, minutes per build on two cores) into ``build/<board>/<node>/`` and
returns one row per build: system clock target and achieved fmax (MHz), whether timing is met,
LUT4 / FF / MULT18X18D / DP16KD used and percent of the device, and the build wall time (s).
``--quick`` builds only the smallest device (Colorlight 5A-75B, LFE5U-25F) with the
transmitter. Each row also gives fmax per further clock domain (``fast``, ``eth``) when the
design has it.

``combkey bench boards-fit`` (:func:`run_fit`) estimates from synthesis the largest channel
counts C (transmitter) and N (relay) that fit each device (:mod:`combkey.boards.fit`);
``--quick`` does the smallest device only.
"""
import time

from .build import run_build
from .nodes import NODE_KINDS
from .registry import BOARDS

__all__ = ["run"]

QUICK = (("colorlight-5a75b", "transmitter"),)


def _row(report):
    util = report["utilisation"]
    sync = report["clocks"].get("sync", {})
    row = {"board": report["board"], "node": report["node"],
           "device": report["device"],
           "target_mhz": round(report["pll"]["sys_clk_hz"] / 1e6, 3),
           "fmax_mhz": round(sync.get("fmax_mhz", float("nan")), 2),
           "timing_met": report["timing_met"]}
    for domain, clock in report["clocks"].items():
        if domain != "sync":
            row[f"{domain}_fmax_mhz"] = round(clock.get("fmax_mhz", float("nan")), 2)
            row[f"{domain}_target_mhz"] = round(clock.get("constraint_mhz", float("nan")), 3)
    for key in ("LUT4", "FF", "MULT18X18D", "DP16KD"):
        entry = util.get(key, {"used": None, "percent": None})
        row[key] = entry["used"]
        row[f"{key}_%"] = entry["percent"]
    row["build_s"] = report["wall_s"]
    return row


def run(quick=False, root="build"):
    """Build the combinations and return ``{"rows": [...], ...}`` (see module docstring)."""
    combos = QUICK if quick else tuple((b, n) for b in BOARDS for n in NODE_KINDS)
    rows = []
    t0 = time.perf_counter()
    for board, node in combos:
        rows.append(_row(run_build(board, node, root=root)))
    return {
        "builds": len(rows),
        "all_timing_met": all(r["timing_met"] for r in rows),
        "total_build_s": round(time.perf_counter() - t0, 1),
        "rows": rows,
    }


def run_fit(quick=False, workroot=None):
    """Synthesis estimate of the largest C and N per device (see :mod:`combkey.boards.fit`)."""
    from .fit import fit_board

    boards = QUICK[0][:1] if quick else tuple(BOARDS)
    rows = []
    for board in boards:
        for row in fit_board(board, workroot):
            flat = {k: v for k, v in row.items() if k not in ("per_channel", "counts")}
            flat.update({f"{k}_per_ch": v for k, v in row["per_channel"].items()})
            rows.append(flat)
    return {"estimate": "synthesis only (no place and route)", "rows": rows}
