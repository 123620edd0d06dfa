"""``python -m meshnode``: the same as the ``meshnode`` command."""

from __future__ import annotations

import sys

from meshnode.cli.main import main

sys.exit(main())
