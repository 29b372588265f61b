"""The schema of hubgate before migrations (up to commit f119d28), which had no version
table: clusters, their workers, and the uids of users without system accounts.

Revision ID: 8c7ca65e6bda
Revises: (none)
"""

import sqlalchemy as sa
from alembic import op

revision = "8c7ca65e6bda"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clusters",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("options", sa.JSON, nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("secrets", sa.LargeBinary, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("started", sa.Float),
        sa.Column("stopped", sa.Float),
        sa.Column("scheduler_state", sa.JSON, nullable=False),
        sa.Column("scheduler_address", sa.String(255), nullable=False),
        sa.Column("dashboard_address", sa.String(255), nullable=False),
        sa.Column("requested_workers", sa.Integer, nullable=False),
        sa.Column("adaptive_active", sa.Boolean, nullable=False),
        sa.Column("adaptive_minimum", sa.Integer, nullable=False),
        sa.Column("adaptive_maximum", sa.Integer, nullable=False),
        sa.Column("lease_expires", sa.Float),
        sa.Column("worker_counter", sa.Integer, nullable=False),
        sa.Column("events", sa.JSON, nullable=False),
        sa.Column("versions", sa.JSON, nullable=False),
    )
    op.create_index("ix_clusters_username", "clusters", ["username"])
    op.create_index("ix_clusters_status", "clusters", ["status"])
    op.create_table(
        "workers",
        sa.Column(
            "cluster_name",
            sa.String(64),
            sa.ForeignKey("clusters.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("state", sa.JSON, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("stopped", sa.Float),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_table(
        "user_uids",
        sa.Column("username", sa.String(255), primary_key=True),
        sa.Column("uid", sa.Integer, nullable=False, unique=True),
        sa.Column("created", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("user_uids")
    op.drop_table("workers")
    op.drop_table("clusters")
