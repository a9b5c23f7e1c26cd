"""A FastAPI service on CockroachDB, written as this library means it to be used."""
