"""Fresh planner statistics for ``memory_access`` while it is small:
``engramdb_refresh_access_stats()``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08

A search reads each hit's access counts with two lookups in ``memory_access`` by its primary
key (0005). Search statements are prepared, and PostgreSQL keeps a prepared statement's generic
plan until the statistics of a table it reads change. While they say ``memory_access`` fits in
a page or a few (a new store, or an ANALYZE of the database before the first searches), the
cheapest lookup is to read the table whole, and that plan stays cached while the table grows,
until autovacuum analyzes it again: within ``autovacuum_naptime`` (a minute by default), later
when its workers are busy. Measured on 2026-12-08, searches of one user's memories took 6.3-6.8
ms instead of 0.6 ms while the table held 4,900 rows and its statistics said none, for about
7 s, until autovacuum came round.

The application role does not own the table and may not ANALYZE it; this function, owned by the
table's owner, does it for the role when the table has grown to four times the pages its
statistics say and they say fewer than 16 (a margin: a lookup was planned as a scan of the
table up to one page of statistics with ``random_page_cost`` 1.1, three with the default 4).
It returns whether they say 16 or more afterwards, so that a caller can stop asking: past
that, every lookup is planned through the primary key. The store asks after each flush of
access counts until then (store/postgres/search.py).
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

#: The application role, created by 0002 (a migration keeps its own copy of what it names).
APP_ROLE = "engramdb_app"
#: Statistics of at least this many pages plan every lookup through the primary key.
SETTLED_PAGES = 16

POSTGRES_UP = [
    f"""
    CREATE FUNCTION engramdb_refresh_access_stats() RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    DECLARE
      known integer;
      pages bigint;
    BEGIN
      SELECT c.relpages INTO known FROM pg_class c
        WHERE c.oid = 'public.memory_access'::regclass;
      IF known >= {SETTLED_PAGES} THEN
        RETURN true;
      END IF;
      pages := pg_relation_size('public.memory_access'::regclass)
        / current_setting('block_size')::integer;
      IF pages < 4 * greatest(known, 1) THEN
        RETURN false;
      END IF;
      ANALYZE public.memory_access;
      SELECT c.relpages INTO known FROM pg_class c
        WHERE c.oid = 'public.memory_access'::regclass;
      RETURN known >= {SETTLED_PAGES};
    END $$""",
    "REVOKE ALL ON FUNCTION engramdb_refresh_access_stats() FROM PUBLIC",
    f"GRANT EXECUTE ON FUNCTION engramdb_refresh_access_stats() TO {APP_ROLE}",
]

POSTGRES_DOWN = [
    "DROP FUNCTION engramdb_refresh_access_stats()",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRES_UP:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRES_DOWN:
            op.execute(statement)
