"""``combkey keyrate sns|mdi --params FILE.json [--optimize] [--json] [--sweep-km A:B:STEP
--plot FILE.png]``.

Prints, for the link of ``FILE.json`` (schema: ``docs/keyrate.md``, validated by
:class:`combkey.keyrate.params.LinkParams`): key rate per pulse and per second (summed over
``channels``), the PLOB bound at that loss (absolute: fibre only; relative: fibre times
detector efficiency), the intensities and probabilities used (optimised when ``--optimize`` is
given or when either object is absent from the file), the decoy estimates (``s1_lower`` /
``e1_upper`` for SNS, ``s11_lower`` / ``e11_upper`` for MDI), the key length and why it is zero
if it is. ``--sweep-km A:B:STEP`` evaluates every distance from A to B inclusive (re-optimising
at each point when optimising, warm-started from the previous one) and ``--plot`` draws key rate
per pulse against distance with both PLOB curves (matplotlib, Agg backend).

JSON output (``--json``): one object with ``protocol``, ``params``, ``key_rate_per_pulse``,
``key_rate_bps``, ``plob_per_pulse``, ``plob_relative_per_pulse``, ``intensities``,
``probabilities``, ``key_bits``, ``abort_reason``, ``epsilon_total``, ``ledger``, ``bounds``
and the protocol's estimates at top level; with ``--sweep-km`` an object with ``rows`` (one such
object per distance). Invalid input exits with status 2 and a message naming the field.
"""
from __future__ import annotations

import json

import click

from .common import plob
from .params import LinkParams, ParamError


def _load(path, protocol):
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise click.UsageError(f"{path} is not valid JSON: {exc}") from exc
    try:
        return LinkParams.from_dict(data, protocol)
    except ParamError as exc:
        raise click.UsageError(f"{path}: {exc}") from exc


def evaluate(params, *, optimise=False):
    """Return the output dict of one link (optimising when asked or when settings are absent)."""
    from . import rate
    from .optimize import optimize
    seconds = None
    if optimise or params.intensities is None or params.probabilities is None:
        o = optimize(params)
        intensities, probabilities, result = o.intensities, o.probabilities, o.result
        seconds = o.seconds
    else:
        intensities, probabilities = dict(params.intensities), dict(params.probabilities)
        result = rate(params)
    per_pulse = result.key_rate_per_pulse
    out = {
        "protocol": params.protocol,
        "distance_km": params.distance_km,
        "key_rate_per_pulse": per_pulse,
        "key_rate_bps": per_pulse * params.clock_hz * params.channels,
        "plob_per_pulse": plob(params.eta_channel),
        "plob_relative_per_pulse": plob(params.eta_channel * params.detector_efficiency),
        "intensities": {k: float(v) for k, v in intensities.items()},
        "probabilities": {k: float(v) for k, v in probabilities.items()},
        "optimised": seconds is not None,
        "optimise_seconds": seconds,
    }
    res = result.to_dict()
    keys = ("s1_lower", "e1_upper") if params.protocol == "sns" else ("s11_lower", "e11_upper")
    for k in keys:
        out[k] = res["bounds"].get(k)
    out.update(key_bits=res["key_bits"], abort_reason=res["abort_reason"],
               epsilon_total=res["epsilon_total"], ledger=res["ledger"], bounds=res["bounds"])
    return out


def _parse_sweep(text):
    try:
        a, b, step = (float(x) for x in text.split(":"))
    except ValueError as exc:
        raise click.BadParameter(f"must be A:B:STEP in km, not {text!r}",
                                 param_hint="--sweep-km") from exc
    if step <= 0 or b < a or a < 0:
        raise click.BadParameter(f"needs 0 <= A <= B and STEP > 0, not {text!r}",
                                 param_hint="--sweep-km")
    n = int((b - a) / step + 1e-9) + 1
    return [a + i * step for i in range(n)]


def _print_one(out):
    click.echo(f"protocol            {out['protocol']}  at {out['distance_km']:g} km")
    click.echo(f"key rate            {out['key_rate_per_pulse']:.4e} per pulse, "
               f"{out['key_rate_bps']:.4e} bit/s")
    click.echo(f"PLOB                {out['plob_per_pulse']:.4e} per pulse (absolute), "
               f"{out['plob_relative_per_pulse']:.4e} (relative, with detector efficiency)")
    for k in ("s1_lower", "e1_upper", "s11_lower", "e11_upper"):
        if k in out and out[k] is not None:
            click.echo(f"{k:<20}{out[k]:.6g}")
    click.echo("intensities         " + ", ".join(f"{k}={v:.4g}"
                                                 for k, v in out["intensities"].items()))
    click.echo("probabilities       " + ", ".join(f"{k}={v:.4g}"
                                                 for k, v in out["probabilities"].items()))
    click.echo(f"key bits            {out['key_bits']}  (epsilon total "
               f"{out['epsilon_total']:.3g}, {sum(out['ledger']['uses'].values())} bounds)")
    if out["abort_reason"]:
        click.echo(f"no key              {out['abort_reason']}")


def _plot(rows, params, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    km = [r["distance_km"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    rate = [r["key_rate_per_pulse"] if r["key_rate_per_pulse"] > 0 else float("nan")
            for r in rows]
    label = params.protocol.upper() + (" + AOPP" if params.aopp else "")
    label += " (finite)" if params.finite else " (asymptotic)"
    ax.semilogy(km, rate, "o-", label=label)
    ax.semilogy(km, [r["plob_per_pulse"] for r in rows], "k--", label="PLOB (absolute)")
    ax.semilogy(km, [r["plob_relative_per_pulse"] for r in rows], "k:",
                label="PLOB (relative)")
    ax.set_xlabel("distance (km)")
    ax.set_ylabel("key rate (bits per pulse)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@click.command()
@click.argument("protocol", type=click.Choice(["sns", "mdi"]))
@click.option("--params", "params_path", required=True,
              type=click.Path(exists=True, dir_okay=False),
              help="Link parameters (JSON, schema in docs/keyrate.md).")
@click.option("--optimize", "optimise", is_flag=True,
              help="Optimise intensities and probabilities (always when absent).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--sweep-km", default=None, help="Sweep distance A:B:STEP in km.")
@click.option("--plot", "plot_path", default=None, type=click.Path(dir_okay=False),
              help="With --sweep-km: write key rate vs distance (PNG) to this file.")
def keyrate(protocol, params_path, optimise, as_json, sweep_km, plot_path):
    """Key rate of an SNS-TF-QKD or four-intensity MDI-QKD link (per pulse, bit/s, PLOB)."""
    params = _load(params_path, protocol)
    if plot_path and not sweep_km:
        raise click.UsageError("--plot needs --sweep-km A:B:STEP")
    if not sweep_km:
        out = evaluate(params, optimise=optimise)
        out["params"] = params.to_dict()
        if as_json:
            click.echo(json.dumps(out, indent=2, default=float))
        else:
            _print_one(out)
        return
    rows = []
    current = params
    for km in _parse_sweep(sweep_km):
        p = current.replace(distance_km=km)
        out = evaluate(p, optimise=optimise or params.intensities is None
                       or params.probabilities is None)
        rows.append(out)
        if out["optimised"] and out["key_rate_per_pulse"] > 0:
            current = p.replace(intensities=out["intensities"],
                                probabilities=out["probabilities"])
    if plot_path:
        _plot(rows, params, plot_path)
    if as_json:
        click.echo(json.dumps({"params": params.to_dict(), "rows": rows, "plot": plot_path},
                              indent=2, default=float))
        return
    click.echo(f"{'km':>8} {'rate/pulse':>12} {'bit/s':>12} {'PLOB':>12} {'PLOB rel':>12}  "
               "note")
    for r in rows:
        click.echo(f"{r['distance_km']:8.1f} {r['key_rate_per_pulse']:12.4e} "
                   f"{r['key_rate_bps']:12.4e} {r['plob_per_pulse']:12.4e} "
                   f"{r['plob_relative_per_pulse']:12.4e}  {r['abort_reason'] or ''}")
    if plot_path:
        click.echo(f"plot written to {plot_path}")
