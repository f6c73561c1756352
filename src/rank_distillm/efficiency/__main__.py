"""``python -m rank_distillm.efficiency JOB RESULT``: one measurement in a process of its own (:mod:`.harness`)."""

import sys

from .harness import worker

sys.exit(worker(sys.argv[1], sys.argv[2]))
