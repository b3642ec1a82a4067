"""The service's task-signing key (see :mod:`outpost.protocol.signing` for why and what).

The Ed25519 private key is made on first start and kept in the database's ``meta`` table (key
``task_signing_key``), so every replica of the service signs with the same key and a restart
keeps it; endpoints pin its public key.  The database already holds everything else a service
needs to act (token hashes, tasks): protect it like the key it now is.
"""

from __future__ import annotations

from outpost.protocol.signing import Signer, new_private_key
from outpost_service.store import Database
from outpost_service.store.secrets import load_or_create_secret

KEY_NAME = "task_signing_key"


def load_or_create_signer(database: Database) -> Signer:
    """The signer of this deployment; the key is created (once) if the database has none."""
    return Signer(load_or_create_secret(database, KEY_NAME, new_private_key))
