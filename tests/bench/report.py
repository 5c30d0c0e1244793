"""One table for a whole `make bench`: every figure next to its same-run baseline, the ratio and the target.

Each bench module calls `record(...)` for the figures it prints; `make bench` clears the record first
(`python -m tests.bench.report --reset`) and ends with `python -m tests.bench.report`, which prints the
table and writes it as JSON (BENCH_JSON, default bench-results.json), so two runs can be compared.

A ratio is always "how many times the baseline's cost this path pays" or "what share of the baseline's
rate it reaches", as the figure's `better` says; `target` is the issue's goal in the same terms, or
empty where a figure is context (a storage size, a baseline-free rate). Nothing here passes or fails:
the table says where each path stands.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from shared.stack.layout import REPO_ROOT

RECORD = Path(os.environ.get("BENCH_RECORD", REPO_ROOT / ".stack" / "bench-figures.jsonl"))
JSON_OUT = Path(os.environ.get("BENCH_JSON", REPO_ROOT / "bench-results.json"))


def record(figure: str, value: float, unit: str, baseline: float | None = None, *,
           better: str = "lower", target: str = "") -> None:
    """Add one figure. `better`: "lower" for costs (seconds; ratio = value / baseline), "higher" for rates
    (per second; ratio = value / baseline too, so a rate's ratio below 1 is a shortfall)."""
    value, baseline = float(value), (None if baseline is None else float(baseline))
    ratio = value / baseline if baseline else None
    RECORD.parent.mkdir(parents=True, exist_ok=True)
    with RECORD.open("a") as out:
        out.write(json.dumps({"figure": figure, "value": value, "unit": unit, "baseline": baseline,
                              "ratio": ratio, "better": better, "target": target}) + "\n")


def _figures() -> list[dict]:
    if not RECORD.exists():
        return []
    return [json.loads(line) for line in RECORD.read_text().splitlines() if line.strip()]


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def main() -> None:
    """Print the run's table and write it as JSON (or, with --reset, start a new record)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reset", action="store_true", help="forget the figures of an earlier run")
    args = parser.parse_args()
    if args.reset:
        RECORD.unlink(missing_ok=True)
        return
    figures = _figures()
    print()
    print(f"{'figure':66} {'value':>10} {'unit':>8} {'baseline':>10} {'ratio':>7}  target")
    for f in figures:
        ratio = "" if f["ratio"] is None else f"{f['ratio']:.2f}"
        print(f"{f['figure'][:66]:66} {_number(f['value']):>10} {f['unit'][:8]:>8} {_number(f['baseline']):>10} "
              f"{ratio:>7}  {f['target']}")
    JSON_OUT.write_text(json.dumps({"measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                                    "figures": figures}, indent=1) + "\n")
    print(f"({len(figures)} figures; written to {JSON_OUT})")


if __name__ == "__main__":
    main()
