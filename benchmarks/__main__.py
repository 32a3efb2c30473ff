"""Run every benchmark: ``python -m benchmarks [--runs N]``."""

from __future__ import annotations

import argparse

from benchmarks import engine_start, guard_proxy, kube, pool_lease, pull_cache, stack_up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="samples per variant (median)")
    parser.add_argument(
        "only", nargs="*", help="engine, stack, guard, pool, pull, kube (default: all but kube)"
    )
    args = parser.parse_args()
    if not args.only or "engine" in args.only:
        engine_start.main(args.runs)
    if not args.only or "stack" in args.only:
        stack_up.main(max(3, args.runs // 2))
    if not args.only or "guard" in args.only:
        guard_proxy.main(max(1, args.runs // 2))
    if not args.only or "pool" in args.only:
        pool_lease.main(args.runs)
    if not args.only or "pull" in args.only:
        pull_cache.main(10)
    if "kube" in args.only:  # needs the test cluster: built and started on demand
        kube.main(args.runs)


if __name__ == "__main__":
    main()
