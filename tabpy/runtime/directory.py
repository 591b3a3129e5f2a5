"""What the workers may run: each endpoint's current version and its object's bytes.

The catalog fills it from the registry (reading each object once); the pool reads it to send
objects to workers and to answer a script's ``tabpy.query``. Because the bytes are held here,
in the server's memory, a worker started while the database is unreachable still loads every
endpoint, and workers never need a registry connection of their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tabpy.runtime.environments import Interpreter
from tabpy.runtime.protocol import Artifact, EndpointRef

__all__ = ["Deployed", "EndpointDirectory"]


@dataclass(frozen=True, slots=True)
class Deployed:
    """An endpoint's current version, its object, and the environment that runs it.

    ``interpreter`` is None for the server's default environment.
    """

    endpoint: EndpointRef
    artifact: Artifact
    #: The environment it runs in; None: the server's own (the default pool).
    interpreter: Interpreter | None = None


class EndpointDirectory:
    """Not thread-safe: the event loop owns it."""

    def __init__(self) -> None:
        self._deployed: dict[str, Deployed] = {}
        self._live: frozenset[str] = frozenset()
        #: Grows with every change, so the pool knows when to look for objects to drop.
        self.generation = 0

    def find(self, name: str) -> Deployed | None:
        return self._deployed.get(name)

    def publish(self, deployed: Mapping[str, Deployed]) -> None:
        """Replace what is deployed; objects no longer in use may be forgotten by the workers."""
        self._deployed = dict(deployed)
        self._live = frozenset(
            d.artifact.sha256 for d in self._deployed.values() if d.artifact.sha256 is not None
        )
        self.generation += 1

    def is_live(self, sha256: str) -> bool:
        return sha256 in self._live

    def held(self) -> dict[str, Artifact]:
        """The objects held, by SHA-256, so a refresh reads only new ones from the registry."""
        return {
            d.artifact.sha256: d.artifact
            for d in self._deployed.values()
            if d.artifact.sha256 is not None and d.artifact.data is not None
        }

    def __len__(self) -> int:
        return len(self._deployed)
