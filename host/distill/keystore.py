"""Key store: secret keys appended to SQLite with block id, length, epsilon and timestamps.

Interface
---------
``KeyStore(path=":memory:")``: opens (creates) the database; one table ``keys``:

===============  =======  ==========================================================
column           type     meaning
===============  =======  ==========================================================
id               INTEGER  row id (autoincrement)
session_id       TEXT     session identifier
party            TEXT     "alice" or "bob" (each end keeps its own store in practice)
channel          INTEGER  wavelength channel index
block_id         INTEGER  block index within the channel
length_bits      INTEGER  key length in bits
epsilon          REAL     total security parameter of this key (composable)
created_utc      TEXT     ISO-8601 UTC timestamp of insertion
session_start    TEXT     ISO-8601 UTC start of the session that produced it
key              BLOB     key bits packed MSB-first (``np.packbits``)
===============  =======  ==========================================================

``append(session_id, party, channel, block_id, bits, epsilon, session_start) -> int`` (row id);
``get(row_id) -> np.ndarray`` (0/1 bits); ``count()``; ``total_bits(party=None)``;
``rows(session_id=None)`` (metadata dicts without the key); ``close()``.
"""
import datetime as dt
import sqlite3

import numpy as np

__all__ = ["KeyStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    party TEXT NOT NULL,
    channel INTEGER NOT NULL,
    block_id INTEGER NOT NULL,
    length_bits INTEGER NOT NULL,
    epsilon REAL NOT NULL,
    created_utc TEXT NOT NULL,
    session_start TEXT NOT NULL,
    key BLOB NOT NULL
)
"""


def utc_now():
    """Return the current UTC time as an ISO-8601 string."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


class KeyStore:
    """Append-only SQLite store of distilled keys."""

    def __init__(self, path=":memory:"):
        self.path = str(path)
        self._db = sqlite3.connect(self.path)
        self._db.execute(_SCHEMA)
        self._db.commit()

    def append(self, session_id, party, channel, block_id, bits, epsilon, session_start=None):
        """Append one key; return its row id."""
        bits = np.asarray(bits, dtype=np.uint8)
        if bits.ndim != 1 or (bits.size and bits.max() > 1):
            raise ValueError("bits must be a 1-D array of 0/1 values")
        if not (0 < epsilon < 1):
            raise ValueError(f"epsilon must be in (0, 1), not {epsilon!r}")
        now = utc_now()
        cur = self._db.execute(
            "INSERT INTO keys (session_id, party, channel, block_id, length_bits, epsilon, "
            "created_utc, session_start, key) VALUES (?,?,?,?,?,?,?,?,?)",
            (str(session_id), str(party), int(channel), int(block_id), int(bits.size),
             float(epsilon), now, session_start or now, np.packbits(bits).tobytes()))
        self._db.commit()
        return cur.lastrowid

    def get(self, row_id):
        """Return the key bits of row ``row_id``."""
        row = self._db.execute("SELECT length_bits, key FROM keys WHERE id = ?",
                               (int(row_id),)).fetchone()
        if row is None:
            raise KeyError(f"row_id {row_id!r} is not in the key store")
        n, blob = row
        return np.unpackbits(np.frombuffer(blob, np.uint8))[:n]

    def count(self):
        """Return the number of stored keys."""
        return self._db.execute("SELECT COUNT(*) FROM keys").fetchone()[0]

    def total_bits(self, party=None):
        """Return the total stored key bits (of one party, or all)."""
        if party is None:
            q = self._db.execute("SELECT COALESCE(SUM(length_bits), 0) FROM keys")
        else:
            q = self._db.execute("SELECT COALESCE(SUM(length_bits), 0) FROM keys WHERE party = ?",
                                 (party,))
        return q.fetchone()[0]

    def rows(self, session_id=None):
        """Return the metadata of the stored keys as dictionaries."""
        cols = ("id", "session_id", "party", "channel", "block_id", "length_bits", "epsilon",
                "created_utc", "session_start")
        sql = f"SELECT {', '.join(cols)} FROM keys"
        args = ()
        if session_id is not None:
            sql += " WHERE session_id = ?"
            args = (session_id,)
        cur = self._db.execute(sql + " ORDER BY id", args)
        return [dict(zip(cols, r, strict=True)) for r in cur]

    def close(self):
        """Close the database."""
        self._db.close()
