"""`lineage ui`: a local, read-only web app over a workspace, and the HTML export.

- `snapshot`: what the UI shows, read from the workspace (the only module that does);
- `server`: the HTTP server (JSON endpoints and the static app, loopback by default);
- `export`: one self-contained HTML file of the same app (`lineage graph --format html`);
- `links`: link targets in MLflow and Prefect, and into the UI;
- `static/`: the app (HTML, CSS, JS) and the vendored layout library (dagre).

Nothing here imports torch, transformers, MLflow or Prefect.
"""
