"""Shared runner for the cocotb benches: Amaranth component -> Verilog -> simulator -> results.

Every bench under ``tests/cocotb/<dut>/test_<...>.py`` is one file with two faces: ``@cocotb.test``
coroutines that run inside the simulator, and a pytest function (marked ``@pytest.mark.cocotb``)
that calls :func:`run`. ``tests/cocotb/conftest.py`` puts this directory on ``sys.path``, so both
faces ``import runner``.

Pytest side
-----------
``run(component, top, test_file, *, build_dir, params=None, test_filter=None, min_tests=1)``
    Write ``verilog.convert(component, name=top)`` to ``build_dir/<top>.v`` and the component's
    ``metadata.as_json()`` to ``build_dir/<top>.ports.json``, build with the simulator named by
    ``$SIM`` (default ``icarus``), run the ``@cocotb.test`` functions of ``test_file``'s module
    (pass ``__file__``), and return ``(tests, failures)``. Raises ``AssertionError`` naming the
    failed cocotb tests (with their messages) when one fails or when fewer than ``min_tests``
    ran. ``test_filter`` is a regular expression searched in the cocotb test names (e.g.
    ``"rx_"``); default all tests of the module. ``params`` (JSON-serialisable dict) reaches the
    simulator side through :func:`params`. ``COMBKEY_VCD=1`` records waves in ``build_dir``.

Simulator side
--------------
``params()``
    The ``params`` dict given to :func:`run`.
``ports()``
    ``{"i.payload": "i__payload", "rx_pin": "rx_pin", ...}``: dotted member path -> Verilog port
    name, read from the component metadata (never hard-code ``i__payload``).
``port(dut, path)``
    The simulator handle of member ``path`` (``port(dut, "o.valid")``).

Embedded Python
---------------
cocotb 2.x loads a ``libpython`` (``LIBPYTHON_LOC``) into the simulator and starts the
interpreter named by ``PYGPI_PYTHON_BIN`` inside it. When that is not the interpreter running
pytest (Debian's ``/usr/bin/python3`` and its ``libpython3.11`` next to a pyenv-based ``.venv``,
or a shell without the venv activated), the embedded Python has no ``.venv`` ``site-packages``
and the bench module, cocotb or combkey is "not found". :func:`run` pins both to the running
interpreter: ``PYGPI_PYTHON_BIN = sys.executable`` (always) and ``LIBPYTHON_LOC`` = the
``libpython`` of this interpreter (``sysconfig`` ``LIBDIR``/``INSTSONAME``, else
``find_libpython`` if it finds the same major.minor; an exported ``LIBPYTHON_LOC`` wins).

Requirements on a fresh machine: ``iverilog`` (Debian package ``iverilog``) and a shared
``libpython`` for the interpreter of ``.venv`` (Debian: package ``libpython3.11``, pulled in by
``python3-dev``; pyenv: build with ``PYTHON_CONFIGURE_OPTS=--enable-shared``).
"""
import json
import os
import shutil
import sys
import sysconfig
from pathlib import Path
from xml.etree import ElementTree

__all__ = ["run", "params", "ports", "port", "libpython_path"]

PORTS_ENV = "COMBKEY_COCOTB_PORTS"
PARAMS_ENV = "COMBKEY_COCOTB_PARAMS"
SIM_TOOLS = {"icarus": ("iverilog", "vvp"), "verilator": ("verilator",)}
#: Amaranth (Yosys ``write_verilog``) emits Verilog-2005 whose ``always @*`` blocks are made to
#: run at time 0 by a ``reg ... = 0`` initialiser. cocotb calls ``iverilog -g2012``, and under
#: SystemVerilog rules that initialiser makes no event: combinational outputs then stay X until
#: an input changes (seen: a bridge's ``rx.ready`` X for the first byte, which duplicated it in
#: the FIFO). ``-g2005`` (given after cocotb's flag, so it wins) restores the intended semantics.
BUILD_ARGS = {"icarus": ["-g2005"]}


def libpython_path():
    """Return the path of the shared ``libpython`` of the running interpreter, or ``None``."""
    libdir = sysconfig.get_config_var("LIBDIR")
    for key in ("INSTSONAME", "LDLIBRARY"):
        name = sysconfig.get_config_var(key)
        if libdir and name and (".so" in name or name.endswith(".dylib")):
            candidate = Path(libdir) / name
            if candidate.is_file():
                return str(candidate)
    import find_libpython
    found = find_libpython.find_libpython()
    # Only a library of this interpreter's version can host it (never another 3.x).
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return found if found and version in Path(found).name else None


def _flatten(members, prefix=""):
    out = {}
    for name, member in members.items():
        path = f"{prefix}{name}"
        if member["type"] == "port":
            out[path] = member["name"]
        else:
            out.update(_flatten(member["members"], path + "."))
    return out


def _failures(results_xml):
    """Return (tests, [(name, message)]) from a cocotb xUnit file."""
    tests, failed = 0, []
    for case in ElementTree.parse(results_xml).getroot().iter("testcase"):
        tests += 1
        for bad in list(case.findall("failure")) + list(case.findall("error")):
            failed.append((case.get("name"), (bad.get("message") or bad.text or "").strip()))
    return tests, failed


def run(component, top, test_file, *, build_dir, params=None, test_filter=None, min_tests=1):
    """Build ``component`` as Verilog module ``top`` and run the cocotb tests of ``test_file``.

    See the module docstring. Returns ``(tests, failures)`` (``failures`` is always 0: a failure
    raises ``AssertionError``).
    """
    from amaranth.back import verilog
    from cocotb_tools.runner import get_runner

    sim = os.getenv("SIM", "icarus")
    for tool in SIM_TOOLS.get(sim, ()):
        if shutil.which(tool) is None:
            raise AssertionError(f"SIM={sim} needs {tool!r} on PATH (Debian package "
                                 f"{'iverilog' if sim == 'icarus' else sim!r}); not found")
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    test_file = Path(test_file).resolve()
    if str(test_file.parent) not in sys.path:
        sys.path.insert(0, str(test_file.parent))
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)

    source = build_dir / f"{top}.v"
    source.write_text(verilog.convert(component, name=top))
    ports_file = build_dir / f"{top}.ports.json"
    ports_file.write_text(json.dumps(component.metadata.as_json(), indent=1))

    env = {PORTS_ENV: str(ports_file), PARAMS_ENV: json.dumps(params or {}),
           "PYGPI_PYTHON_BIN": sys.executable}
    if "LIBPYTHON_LOC" not in os.environ:
        lib = libpython_path()
        if lib is None:
            raise AssertionError(f"no shared libpython found for {sys.executable}; install the "
                                 "Python shared library (Debian: libpython3.X) or export "
                                 "LIBPYTHON_LOC")
        env["LIBPYTHON_LOC"] = lib
    waves = os.getenv("COMBKEY_VCD", "") not in ("", "0")

    runner = get_runner(sim)
    # _set_env_common() copies os.environ over extra_env, then reads LIBPYTHON_LOC from the
    # result; put ours into os.environ for the duration of the call so it cannot be shadowed.
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        runner.build(sources=[source], hdl_toplevel=top, build_dir=build_dir, always=True,
                     timescale=("1ns", "1ps"), waves=waves, build_args=BUILD_ARGS.get(sim, []),
                     log_file=build_dir / "build.log")
        results = build_dir / "results.xml"
        try:
            runner.test(test_module=test_file.stem, hdl_toplevel=top, build_dir=build_dir,
                        test_dir=build_dir, extra_env=env, test_filter=test_filter, waves=waves,
                        results_xml=str(results), log_file=build_dir / "sim.log")
        except SystemExit:
            pass  # cocotb exits on failure under pytest; the results file tells us more
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    log = build_dir / "sim.log"
    tail = "\n".join(log.read_text().splitlines()[-40:]) if log.is_file() else "(no log)"
    if not results.is_file():
        raise AssertionError(f"cocotb wrote no results for {test_file.stem} ({sim}); log tail:\n"
                             f"{tail}")
    tests, failed = _failures(results)
    if failed:
        lines = "\n".join(f"  {name}: {msg}" for name, msg in failed)
        raise AssertionError(f"{len(failed)} of {tests} cocotb tests failed in "
                             f"{test_file.stem}:\n{lines}\nlog: {log}")
    if tests < min_tests:
        raise AssertionError(f"only {tests} cocotb tests ran in {test_file.stem} (expected >= "
                             f"{min_tests}); log tail:\n{tail}")
    return tests, 0


def params():
    """Return the ``params`` dict passed to :func:`run` (simulator side)."""
    return json.loads(os.environ.get(PARAMS_ENV, "{}"))


def ports():
    """Return ``{dotted member path: Verilog port name}`` of the DUT (simulator side)."""
    meta = json.loads(Path(os.environ[PORTS_ENV]).read_text())
    return _flatten(meta["interface"]["members"])


def port(dut, path):
    """Return the handle of the DUT port for member ``path`` (e.g. ``"o.valid"``)."""
    table = ports()
    if path not in table:
        raise KeyError(f"DUT has no member {path!r}; members: {sorted(table)}")
    return getattr(dut, table[path])
