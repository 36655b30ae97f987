"""``python -m funnelmodels.cli``: the command line."""

from funnelmodels.cli import main

raise SystemExit(main())
