"""``python -m msstorm.monitor``: the same as ``msstorm-monitor``."""

import sys

from .cli import main

sys.exit(main())
