"""python -m bench [--quick] [--json PATH]: measure, print the markdown report, write the JSON."""

import argparse
import shlex
import sys
import time
from pathlib import Path

from . import report
from .context import Bench
from .figures import FIGURES
from .plan import FULL, QUICK

DEFAULT_JSON = Path(__file__).with_name("results") / "latest.json"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run: few iterations, small output, short deadlines")
    parser.add_argument("--json", default=DEFAULT_JSON, type=Path, help=f"where to write the results (default: {DEFAULT_JSON})")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    command = shlex.join([sys.executable, "-m", "bench", *argv])
    date, source = report.now(), report.source()  # before the run: what was installed and measured
    began = time.perf_counter()
    with Bench(plan) as bench:
        for key, why in bench.skipped.items():
            print(f"bench: skipping {key}: {why}", file=sys.stderr)
        rows = []
        for figure in FIGURES:
            print(f"bench: {figure.__name__} ({time.perf_counter() - began:.0f} s)", file=sys.stderr, flush=True)
            rows += figure(bench)
        facts = dict(
            date=date, machine=report.machine(), source=source, command=command, plan=plan,
            peers=bench.peers, skipped=bench.skipped, rows=rows,
        )
    print(f"bench: done in {time.perf_counter() - began:.0f} s; results in {args.json}", file=sys.stderr)
    print(report.markdown(**facts))
    report.write_json(args.json, **facts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
