"""Finding a table another member of the fleet holds, and moving it here.

Behind a load balancer, Tableau Prep's ``DoPut`` may land on one instance, its ``/evaluate``
on a second and its ``DoGet`` on a third. The client chooses the input's path and the server
the output's, so no instance can tell from a path where its table is. An instance that lacks
a table therefore asks every other live member (their Flight addresses come from the
membership table, :mod:`tabpy.runtime.fleet`) at once with an internal ``DoGet``: the one that
holds it streams it, the others answer "not found" straight away. The table is written into a
local segment as it arrives and stored here, then used as if it had been put here; the owner
has given it up (a ``DoGet`` removes a table), so each table still lives in one place.

Why ask rather than record each table's owner in the registry: a ``DoPut`` would then write to
the shared database, which Prep flows do far more often than deploys, and a stale owner row
would still need this fallback. Asking costs N - 1 small calls on a miss and nothing otherwise.

Internal calls carry this instance's own credentials (``TABPY_INTERNAL_CREDENTIALS_FILE``),
checked by the owner's authenticator like any client's, and a ticket marked :data:`LOCAL`, so
that an owner never asks its own peers in turn.
"""

from __future__ import annotations

import base64
import concurrent.futures
import logging
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as flight

from tabpy.arrow.arrow_errors import TransferFailed
from tabpy.arrow.flight import LOCAL, Key, receive, ticket_of
from tabpy.arrow.store import StoredTable, TableStore
from tabpy.config import ConfigError

__all__ = ["LOCAL", "OwnerLookup", "internal_authorization"]

logger = logging.getLogger(__name__)

#: Seconds an internal call may take, the transfer included (a peer that hangs is given up).
CALL_SECONDS = 120.0


def internal_authorization(path: Path | None) -> bytes | None:
    """The ``authorization`` value internal calls send, from ``TABPY_INTERNAL_CREDENTIALS_FILE``.

    The file holds ``user:password`` (a user of the password file every member reads) or a
    whole ``Bearer <token>`` value; one trailing newline is ignored. Never logged.
    """
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(
            f"TABPY_INTERNAL_CREDENTIALS_FILE = {path} cannot be read ({type(err).__name__}): "
            "make it a UTF-8 text file readable by the server's user."
        ) from None
    if text.startswith("Bearer "):
        return text.encode("latin-1")
    if ":" not in text:
        raise ConfigError(
            f"TABPY_INTERNAL_CREDENTIALS_FILE = {path} holds neither user:password nor "
            "'Bearer <token>': write one of them on its single line."
        )
    return b"Basic " + base64.b64encode(text.encode("utf-8"))


class OwnerLookup:
    def __init__(self, store: TableStore, authorization: bytes | None) -> None:
        self.store = store
        self._authorization = authorization
        self._warned = False

    def fetch(self, key: Key, peers: Sequence[str]) -> StoredTable | None:
        """Move the table under ``key`` here from whichever of ``peers`` holds it; None if none.

        Blocks (call it on a thread); the table is in this store when it returns.
        """
        if not peers:
            return None
        ticket = flight.Ticket(LOCAL + ticket_of(key))
        with concurrent.futures.ThreadPoolExecutor(len(peers)) as pool:
            asks = [pool.submit(self._ask, peer, ticket) for peer in peers]
            found: StoredTable | None = None
            for done in concurrent.futures.as_completed(asks):
                answer = done.result()
                if answer is None:
                    continue
                peer, client, reader = answer
                try:
                    if found is None:  # only one member can hold a path; keep the first
                        found = _receive(peer, reader, self.store, key)
                finally:
                    client.close()
        return found

    def _ask(
        self, peer: str, ticket: flight.Ticket
    ) -> tuple[str, flight.FlightClient, flight.FlightStreamReader] | None:
        headers = [(b"authorization", self._authorization)] if self._authorization else []
        options = flight.FlightCallOptions(headers=headers, timeout=CALL_SECONDS)
        client = flight.FlightClient(peer)
        try:
            reader = client.do_get(ticket, options)
            reader.schema  # noqa: B018 - the first message: "not found" surfaces here
        except flight.FlightUnauthenticatedError:
            self._warn(peer, "it refused this instance's credentials")
        except flight.FlightUnauthorizedError:
            self._warn(peer, "this instance's internal user lacks the role DoGet needs")
        except KeyError:  # pyarrow's ArrowKeyError: gRPC NOT_FOUND, the usual answer
            pass
        except (pa.ArrowException, OSError) as err:  # FlightError is an ArrowException
            logger.warning("Arrow Flight: could not ask %s for a table: %s", peer, _line(err))
        else:
            return peer, client, reader
        client.close()
        return None

    def _warn(self, peer: str, why: str) -> None:
        if not self._warned:
            logger.warning(
                "Arrow Flight: cannot fetch tables from %s: %s; set "
                "TABPY_INTERNAL_CREDENTIALS_FILE to a user every instance accepts",
                peer,
                why,
            )
        self._warned = True


def _receive(
    peer: str, reader: flight.FlightStreamReader, store: TableStore, key: Key
) -> StoredTable:
    """Store what ``peer`` streams; its failure part-way is :class:`TransferFailed`."""
    try:
        return receive(reader, store, key)
    except (pa.ArrowException, OSError) as err:  # StoreFull (a TabPyError) passes through
        logger.warning("Arrow Flight: %s failed while sending a table: %s", peer, _line(err))
        raise TransferFailed(peer) from None


def _line(err: BaseException) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0]
