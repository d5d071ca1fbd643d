"""`python -m camserver.sim`: the camera simulator."""

from .simcam import main

raise SystemExit(main())
