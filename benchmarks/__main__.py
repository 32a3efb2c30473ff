"""Run every benchmark: ``python -m benchmarks [--runs N]``."""

from __future__ import annotations

import argparse

from benchmarks import engine_start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="samples per variant (median)")
    args = parser.parse_args()
    engine_start.main(args.runs)


if __name__ == "__main__":
    main()
