"""clusters.display_name: the name people give a cluster (``name`` stays its id).
Existing clusters are named ``cluster-`` and the first 8 digits of their id: a valid
display name (hubgate/cluster_names.py) that their owners can tell apart.

Revision ID: 5d1e0a7c2b94
Revises: c894672d22b3
"""

import sqlalchemy as sa
from alembic import op

revision = "5d1e0a7c2b94"
down_revision = "c894672d22b3"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clusters") as batch:
        batch.add_column(sa.Column("display_name", sa.String(64), nullable=True))
    clusters = sa.table("clusters", sa.column("name", sa.String), sa.column("display_name"))
    op.execute(
        clusters.update().values(
            display_name=sa.literal("cluster-") + sa.func.substr(clusters.c.name, 1, 8)
        )
    )
    with op.batch_alter_table("clusters") as batch:
        batch.alter_column("display_name", existing_type=sa.String(64), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("clusters") as batch:
        batch.drop_column("display_name")
