"""clusters.server: the owner's single-user server whose token created the cluster, so
that HubgateService.stop_clusters_with_server can stop it when that server stops.
Existing clusters get NULL: no server is known for them, and none of them is stopped.

Revision ID: c894672d22b3
Revises: 3620cf2796fd
"""

import sqlalchemy as sa
from alembic import op

revision = "c894672d22b3"
down_revision = "3620cf2796fd"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clusters") as batch:
        batch.add_column(sa.Column("server", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("clusters") as batch:
        batch.drop_column("server")
