"""Keep embeddings inside the memories row (``STORAGE MAIN``) instead of the TOAST table.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23

pgvector's ``vector`` is stored ``EXTERNAL`` by default: once a row passes PostgreSQL's 2 kB
TOAST threshold, the toaster moves the row's largest movable value out of line, and that is
the embedding (1.5 kB at 384 dimensions). A memory with a few hundred characters of content,
its text-search vector and metadata passes that threshold, so its embedding ends up in the
TOAST table, and every exact distance computed on it (the path a selective filter takes) costs
a TOAST index lookup and another page. ``MAIN`` makes the toaster compress or move the other
columns first (content, tsv, metadata: only needed for the final top k) and move the
embedding out only if the row would not fit a page otherwise. Measured on the benchmark's 100k
store, whose contents are short (55 characters on average), 10.6% of the embeddings were out of
line, from 53 characters of content up; exact search over one agent's 1,000 memories took 2.4 ms
with them and 2.1 ms with every embedding in its row. Longer contents move more of them out.

Only the column's storage strategy changes (no rewrite, instant); rows written before keep
their layout until they are rewritten (an update of the row, or ``VACUUM FULL memories``).
SQLite stores vectors as BLOBs in the row already: nothing to do there.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE memories ALTER COLUMN embedding SET STORAGE MAIN")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE memories ALTER COLUMN embedding SET STORAGE EXTERNAL")
