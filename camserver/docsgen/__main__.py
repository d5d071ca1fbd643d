"""`python -m camserver.docsgen [--check] [--out DIR]`: write (or check) the generated reference pages."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import REFERENCE_DIR, render


def main(argv: list[str] | None = None) -> int:
    """Write every generated page, or with --check say which are stale and exit 1."""
    p = argparse.ArgumentParser(prog="python -m camserver.docsgen", description=__doc__)
    p.add_argument("--out", type=Path, default=REFERENCE_DIR, help="folder of the pages (default docs/reference)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 when a page differs")
    args = p.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = args.out / name
        if path.exists() and path.read_text() == text:
            continue
        stale.append(str(path))
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    verb = "stale" if args.check else "written"
    print(f"{verb}: {', '.join(stale)}" if stale else "every generated page is up to date")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
