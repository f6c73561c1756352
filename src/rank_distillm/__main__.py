"""``python -m rank_distillm COMMAND ...``: the ``rank-distillm`` command line, e.g. under
``accelerate launch -m rank_distillm train --profile gpu``."""

import sys

from .cli import main

sys.exit(main())
