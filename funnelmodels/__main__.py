"""``python -m funnelmodels``: the command line."""

from funnelmodels.cli import main

raise SystemExit(main())
