"""Run every benchmark (or the ones named): python -m benchmarks [--quick] [decode train ...]"""
import importlib
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    quick = "--quick" in argv
    wanted = [a for a in argv if not a.startswith("-")]
    names = sorted(m.name.removeprefix("bench_") for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                   if m.name.startswith("bench_"))
    for name in wanted or names:
        if name not in names:
            sys.exit(f"error: no benchmark {name!r}: choose from {', '.join(names)}")
        importlib.import_module(f"benchmarks.bench_{name}").main(["--quick"] if quick else [])


if __name__ == "__main__":
    main(sys.argv[1:])
