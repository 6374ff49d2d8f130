"""Build a copy of the project whose pure core (exchange/domain) is compiled with mypyc.

    python bench/compile_core.py /tmp/exchange-compiled
    cd /tmp/exchange-compiled && python -m pytest tests/domain && python bench/bench_engine.py

Why a copy: compiled modules shadow the .py files they come from, so compiling inside the working
tree would make every later edit silently not take effect. The copy is what a production image would
ship; the working tree stays pure Python, which is what the README's commands install and test.
mypyc compiles the same annotated source (no second implementation); it also enforces the
annotations at run time, a useful extra check.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# errors.py holds exception classes, which must stay ordinary Python classes; __init__ is empty.
NOT_COMPILED = {"__init__.py", "errors.py"}

MYPY_INI = """[mypy]
python_version = 3.11
ignore_missing_imports = True
"""

PYTEST_INI = """[pytest]
testpaths = tests
addopts = -q -p no:cacheprovider
markers =
    slow: long-running property or soak tests
"""


def build(dest: Path) -> list[Path]:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in ("exchange", "contracts", "tests", "bench"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    (dest / "mypy.ini").write_text(MYPY_INI)
    (dest / "pytest.ini").write_text(PYTEST_INI)
    modules = sorted(p for p in (dest / "exchange" / "domain").glob("*.py") if p.name not in NOT_COMPILED)
    mypyc = Path(sys.executable).with_name("mypyc")
    subprocess.run([str(mypyc), *[str(p.relative_to(dest)) for p in modules]], cwd=dest, check=True,
                   stdout=subprocess.DEVNULL)
    check = subprocess.run(
        [sys.executable, "-c", "import exchange.domain.engine as e, exchange.domain.book as b; "
                               "print(e.__file__); print(b.__file__)"],
        cwd=dest, check=True, capture_output=True, text=True)
    if ".py\n" in check.stdout:
        raise SystemExit(f"compiled modules did not load:\n{check.stdout}")
    return modules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dest", type=Path, help="directory to create (replaced if it exists)")
    args = parser.parse_args()
    modules = build(args.dest.resolve())
    print(f"compiled {len(modules)} modules of exchange/domain into {args.dest}")


if __name__ == "__main__":
    main()
