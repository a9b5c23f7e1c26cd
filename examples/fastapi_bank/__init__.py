"""A FastAPI service on CockroachDB, written the way this library means it to be used."""
