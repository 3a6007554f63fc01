"""The lineage graph: every model, version, edge, alias, test and cascade record.

`repo.GraphRepo` is the only code that speaks SQL to the graph DB; `walk` holds the
pure topology (orderings, levels, paths) it and the cascade planner share; `schema`
and `migrations` define the tables (SQLite by default, any SQLAlchemy URL); `engine`
makes the connections. Nothing here imports the store, recipes or Prefect/MLflow.
"""
