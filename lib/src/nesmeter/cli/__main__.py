"""``python -m nesmeter.cli`` (or ``scripts/meter``)."""

import sys

from nesmeter.cli.cli import main

sys.exit(main())
