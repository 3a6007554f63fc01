"""`python -P -m lineage.steps SPEC.json`: run one step (see `lineage.steps.entry`)."""

import sys

from lineage.steps.entry import main

sys.exit(main())
