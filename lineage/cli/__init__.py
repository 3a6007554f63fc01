"""The `lineage` command line: parse, call one Workspace method, print."""
