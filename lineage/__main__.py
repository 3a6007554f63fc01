"""`python -m lineage …`: the same CLI as the `lineage` command."""

from lineage.cli.main import main

main()
