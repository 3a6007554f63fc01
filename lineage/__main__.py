"""`python -m lineage …`: the same CLI as the `lineage` command."""

import sys

from lineage.cli.main import main

sys.exit(main())
