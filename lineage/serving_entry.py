"""Models-from-code entry of lineage's pointer model; MLflow executes this file.

It is copied into each logged model's artifacts and run by
`mlflow.pyfunc.load_model`; lineage itself never imports it. See `lineage.serving`.
"""

from lineage.serving import install_pointer_model

install_pointer_model()
