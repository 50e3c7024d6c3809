"""``python -m custom_components.nes_meter.meter`` (or ``scripts/meter``)."""

import sys

from .cli import main

sys.exit(main())
