"""The service's task-signing key (see :mod:`outpost.protocol.signing` for why and what).

The Ed25519 private key is made on first start and kept in the database's ``meta`` table (key
``task_signing_key``), so every replica of the service signs with the same key and a restart
keeps it; endpoints pin its public key.  The database already holds everything else a service
needs to act (token hashes, tasks): protect it like the key it now is.
"""

from __future__ import annotations

import sqlalchemy as sa

from outpost.protocol.signing import Signer, new_private_key
from outpost_service.store import Database
from outpost_service.store.schema import meta

KEY_NAME = "task_signing_key"


def load_or_create_signer(database: Database) -> Signer:
    """The signer of this deployment; the key is created (once) if the database has none."""
    with database.read() as conn:
        stored = conn.execute(sa.select(meta.c.value).where(meta.c.key == KEY_NAME)).scalar()
    if stored is None:
        try:
            with database.write() as conn:
                conn.execute(meta.insert().values(key=KEY_NAME, value=new_private_key()))
        except sa.exc.IntegrityError:  # another replica made it first: use theirs
            pass
        with database.read() as conn:
            stored = conn.execute(sa.select(meta.c.value).where(meta.c.key == KEY_NAME)).scalar()
    return Signer(str(stored))
