"""Databases for apps: a PostgreSQL database and a Redis key prefix each, with backups proven by restoring
them (see README.md here)."""
