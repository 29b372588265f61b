"""Alembic's entry point for hubgate's migrations.

hubgate runs them itself (``hub_service/schema.py``), with no ``alembic.ini``: the
caller passes an open connection, already in a transaction, in
``config.attributes["connection"]``, and commits it when every step has run.
"""

from alembic import context

from hubgate.hub_service.store import metadata

connection = context.config.attributes["connection"]
# render_as_batch: SQLite cannot alter most of a table in place; batch operations copy it.
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
