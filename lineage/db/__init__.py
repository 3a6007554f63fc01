"""The lineage graph database: schema, engine and migrations."""
