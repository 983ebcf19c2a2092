"""The database: the engine, the schema, the migrations and the request store."""
