"""``combkey bench NAME [--json]``: every benchmark of the project.

A benchmark is a function ``run(quick: bool) -> dict`` returning a flat-ish dictionary of
measured figures (numbers, strings, or lists of row dictionaries under the key ``"rows"``).
It is registered in :data:`BENCHES` as ``name -> "module:function"`` and imported lazily.
``make bench`` runs ``combkey bench all``, which runs each in turn and prints its table.
Benchmarks report only what they measured; targets are printed beside the figure, never
asserted.
"""
import importlib
import json
import time

import click
from rich.console import Console
from rich.table import Table

#: benchmark name -> "module:function" returning a dict of figures.
BENCHES = {
    "pattern": "combkey.pattern:bench",
    "link": "combkey.device:bench_link",
    "keyrate": "combkey.keyrate.bench:run",
    "distill": "combkey.distill.bench:run",
    "session": "combkey.session:bench_run",
    "boards": "combkey.boards.bench:run",
    "boards-fit": "combkey.boards.bench:run_fit",
    "tagger": "combkey.tagger:run",
    "loops": "combkey.loops:run",
    "ethernet": "combkey.net_bench:run",
}


def run_bench(name, quick=False):
    """Run one registered benchmark and return its figures, with its wall time added."""
    module, attr = BENCHES[name].split(":")
    fn = getattr(importlib.import_module(module), attr)
    t0 = time.perf_counter()
    result = fn(quick=quick)
    result.setdefault("bench", name)
    result["bench_wall_s"] = round(time.perf_counter() - t0, 3)
    return result


def print_result(result, console=None):
    """Print a benchmark result as tables: scalars first, then any ``rows``."""
    console = console or Console()
    scalars = Table(title=f"combkey bench {result.get('bench')}", show_header=True)
    scalars.add_column("figure")
    scalars.add_column("value", justify="right")
    for key, value in result.items():
        if key == "rows" or isinstance(value, (list, dict)):
            continue
        scalars.add_row(key, _fmt(value))
    console.print(scalars)
    rows = result.get("rows") or []
    if rows:
        table = Table(show_header=True)
        columns = list(dict.fromkeys(k for row in rows for k in row))
        for col in columns:
            table.add_column(col, justify="right")
        for row in rows:
            table.add_row(*(_fmt(row.get(col, "")) for col in columns))
        console.print(table)


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@click.command()
@click.argument("name", type=click.Choice(sorted(BENCHES) + ["all"]))
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--quick", is_flag=True, help="Smaller problem sizes (for smoke tests).")
def bench(name, as_json, quick):
    """Run benchmark NAME (or all) and print its figures."""
    names = sorted(BENCHES) if name == "all" else [name]
    results = []
    for n in names:
        result = run_bench(n, quick=quick)
        results.append(result)
        if not as_json:
            print_result(result)
    if as_json:
        click.echo(json.dumps(results if name == "all" else results[0], indent=2, default=str))
