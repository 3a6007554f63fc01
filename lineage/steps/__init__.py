"""Steps: one derive or test, described by a typed spec, run by a runner.

- `spec`: the typed specs (`DeriveSpec`, `TestSpec`, `ProbeSpec`) and their JSON form;
- `entry`: the code that runs inside a step (`python -P -m lineage.steps SPEC.json`);
- `runners`: where steps run — `inline` (this process), `process` (a subprocess),
  `docker` (a locked-down container) — behind one `Runner` interface;
- `pool`, `worker`: warm workers for the process and docker runners (one subprocess or
  container per slot, taking one step after another), what a cascade runs on;
- `engine`, `images`: the Docker engine connection and the task image's name.

A step reads its inputs and writes only its output folder; the host commits what it
made. Nothing here touches the graph DB or the object store.
"""
