"""PostgreSQL: the storage verbs over asyncpg, for several gateway processes on one database."""
