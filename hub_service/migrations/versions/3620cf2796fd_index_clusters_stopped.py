"""An index on clusters.stopped: the retention sweep (every 10 minutes) selects the
clusters that stopped before a cutoff, which scanned the whole table.

Revision ID: 3620cf2796fd
Revises: 8c7ca65e6bda
"""

from alembic import op

revision = "3620cf2796fd"
down_revision = "8c7ca65e6bda"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_clusters_stopped", "clusters", ["stopped"])


def downgrade() -> None:
    op.drop_index("ix_clusters_stopped", table_name="clusters")
