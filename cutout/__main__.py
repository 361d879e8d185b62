"""``python -m cutout``: the same as the ``cutout`` console script."""

from cutout.cli import main

raise SystemExit(main())
