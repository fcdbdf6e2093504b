"""`make bench`: every benchmark, each printing figures and ratios against baselines
measured in the same run. `python -m bench NAME` runs one."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "write_path": "bench.write_path",
    "projections": "bench.projections",
    "workers": "bench.workers",
    "api": "bench.api",
    "audit": "bench.audit",
}


def main(names: list[str]) -> None:
    for name in names or list(BENCHMARKS):
        if name not in BENCHMARKS:
            sys.exit(f"unknown benchmark {name!r}; choose among {', '.join(BENCHMARKS)}")
        print(f"\n== {name} ==", flush=True)
        sys.argv = [BENCHMARKS[name]]  # each benchmark's own options keep their defaults
        importlib.import_module(BENCHMARKS[name]).main()


if __name__ == "__main__":
    main(sys.argv[1:])
