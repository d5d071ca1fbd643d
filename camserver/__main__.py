"""`python -m camserver`."""

from .cli import main

raise SystemExit(main())
