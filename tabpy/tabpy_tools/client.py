"""Deploy Python functions to a TabPy server and call them, from Python.

``from tabpy.tabpy_tools.client import Client`` keeps TabPy 2.16's API. Deploying uploads the
pickled function over HTTP (``PUT artifacts/<sha256>``), so the client and the server need no
shared disk; against a TabPy 2.16 server, which lacks that route, the client falls back to
writing the pickle into the server's upload folder as TabPy's own client did.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from types import TracebackType
from typing import Any

import httpx

from tabpy.tabpy_tools._deploy import Artifact, check_name, endpoint_body, pack, wait_until_loaded
from tabpy.tabpy_tools._environment import (
    Requirements,
    requirements_body,
    wait_for_environment,
)
from tabpy.tabpy_tools.endpoints import Endpoint, endpoint_from_json
from tabpy.tabpy_tools.errors import (
    DeploymentError,
    EndpointExistsError,
    EndpointNotFoundError,
    InvalidArgumentError,
    InvalidEndpointInfoError,
    NotFoundError,
)
from tabpy.tabpy_tools.query_object import write_archive
from tabpy.tabpy_tools.rest import Connection, Verify, base_url, quote_name

__all__ = ["Client"]

logger = logging.getLogger(__name__)

DEFAULT_QUERY_TIMEOUT = 1000.0
DEFAULT_DEPLOY_TIMEOUT = 60.0
#: The longest endpoint name a server creates; longer ones come from older servers.
MAX_NAME_LENGTH = 1024


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


class Client:
    """A connection to one TabPy server.

    ``endpoint`` is the server's URL: ``http(s)://host[:port]``, optionally followed by the
    server's ``Subdirectory`` path (``https://host:9004/tabpy``); the trailing ``/`` is optional.

    ``query_timeout`` is the number of **seconds** (TabPy documented milliseconds but always used
    seconds) to wait for the server's reply to any single request; ``math.inf`` waits forever.

    ``remote_server`` and ``localhost_endpoint`` are accepted for compatibility and have no
    effect: TabPy needed them to deploy to a server without a shared disk, by sending source
    code (and the password) through ``/evaluate``; this client uploads the pickled function
    instead, which works for local and remote servers alike.

    Keyword-only extras: ``verify`` checks the server's TLS certificate (``True``, the default),
    or trusts the CA bundle at the given path, or (``False``) skips the check; ``deploy_timeout``
    is how many seconds ``deploy`` waits for the server to load the new version; ``transport``
    replaces the network layer (an ``httpx.BaseTransport``, e.g. ``httpx.MockTransport`` in tests).

    The client holds a connection pool: use it as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        endpoint: str,
        query_timeout: float = DEFAULT_QUERY_TIMEOUT,
        remote_server: bool = False,
        localhost_endpoint: str | None = None,
        *,
        verify: Verify = True,
        deploy_timeout: float = DEFAULT_DEPLOY_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        base = base_url(endpoint)
        if not _positive(query_timeout):
            logger.warning(
                "query_timeout=%r is not a positive number of seconds; using %g",
                query_timeout,
                DEFAULT_QUERY_TIMEOUT,
            )
            query_timeout = DEFAULT_QUERY_TIMEOUT
        if not _positive(deploy_timeout):
            raise InvalidArgumentError(
                f"deploy_timeout={deploy_timeout!r} must be a positive number of seconds"
            )
        self._endpoint = endpoint
        self._query_timeout = float(query_timeout)
        self._remote_server = bool(remote_server)
        self._localhost_endpoint = localhost_endpoint
        self.deploy_timeout = float(deploy_timeout)
        self._connection = Connection(
            base, timeout=self._query_timeout, verify=verify, transport=transport
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} object at {hex(id(self))} connected to {self._endpoint!r}>"

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self._connection.close()

    @property
    def query_timeout(self) -> float:
        """Seconds to wait for any single reply; setting a non-positive or non-number is ignored."""
        return self._query_timeout

    @query_timeout.setter
    def query_timeout(self, value: float) -> None:
        if not _positive(value):
            logger.warning("Ignoring query_timeout=%r: not a positive number of seconds", value)
            return
        self._query_timeout = float(value)
        self._connection.set_timeout(self._query_timeout)

    def set_credentials(self, username: str, password: str) -> None:
        """Send HTTP Basic credentials with every later request."""
        logger.info("Setting credentials (username: %s)", username)
        self._connection.set_credentials(username, password)

    def get_status(self) -> dict[str, Any]:
        """``GET status``: each endpoint's ``version``, ``type``, ``status``, ``last_error``."""
        status: dict[str, Any] = self._connection.get_json("status")
        return status

    def query(self, name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Call the endpoint ``name`` with positional or keyword arguments (not both).

        Returns the server's reply ``{"response": ..., "version": ..., "model": ..., "uuid": ...}``.
        """
        if args and kwargs:
            # TabPy's wire format carries either a list or an object, never both.
            raise InvalidArgumentError(
                "Mixing of keyword arguments and positional arguments when querying an "
                "endpoint is not supported."
            )
        data: Any = list(args) if args else kwargs
        response = self._connection.request(
            "POST", f"query/{quote_name(name)}", expect=(200, 201), json_body={"data": data}
        )
        reply: dict[str, Any] = response.json()
        return reply

    def get_endpoints(self, type: str | None = None) -> dict[str, Endpoint]:
        """``GET endpoints``: deployed endpoints by name, only those of ``type`` if given."""
        params = {"type": type} if type else None
        listing = self._connection.get_json("endpoints", params=params)
        endpoints = {name: endpoint_from_json(name, info) for name, info in listing.items()}
        if type:  # TabPy's server ignores the parameter
            endpoints = {name: e for name, e in endpoints.items() if e.get("type") == type}
        return endpoints

    def deploy(
        self,
        name: str,
        obj: Callable[..., Any],
        description: str = "",
        schema: Any = None,
        override: bool = False,
        is_public: bool = False,
        *,
        requirements: Requirements | None = None,
        wait: bool = True,
    ) -> None:
        """Deploy the function ``obj`` as endpoint ``name`` and return once the server serves it.

        Redeploying an existing name needs ``override=True`` and creates the next version.
        ``schema`` is usually the result of :func:`tabpy.tabpy_tools.schema.generate_schema`.
        ``is_public`` is sent on every deploy, so a redeploy without it makes the endpoint
        private again (as with TabPy).

        ``requirements`` gives this version its own Python environment, built by the server:
        a list of requirement strings (``["scikit-learn==1.5.2", "numpy<2"]``) or the path of
        a ``requirements.txt``, ``uv.lock`` or ``pylock.toml`` file. Without it the version
        runs in the server's own environment, as with TabPy. The server builds the environment
        after replying; the wait shows its phase and elapsed time on standard error when that
        is a terminal, and ends when the version serves or its build fails.

        ``wait=False`` returns as soon as the server has recorded the version.

        Raises ``EndpointExistsError``, ``LoadFailedError`` (the server could not load the
        function, or could not build its environment: ``last_error`` has the installer's
        words), ``DeploymentTimeoutError``, ``DeploymentError`` (a server that cannot build
        environments was given ``requirements``) or a ``ResponseError`` subclass.
        """
        check_name(name)
        spec = None if requirements is None else requirements_body(requirements)
        description = "" if description is None else description
        if self._remote_server:
            logger.info(
                "remote_server=True is not needed: deploy uploads the function over HTTP, "
                "which works for remote servers without sending any source code"
            )
        artifact = pack(obj, description)
        current = self._endpoint_info(name)
        if current is not None and not override:
            raise EndpointExistsError(
                f"An endpoint with that name ({name}) already exists. Use "
                '"override = True" to force update an existing endpoint.'
            )
        version = int(current.get("version", 0)) + 1 if current is not None else 1
        src_path = None
        if not self._upload(artifact):
            if spec is not None:
                raise DeploymentError(_NO_ENVIRONMENTS)
            src_path = self._write_to_shared_folder(name, version, artifact)
        body = endpoint_body(
            name,
            version,
            artifact,
            description=description,
            schema=schema,
            is_public=is_public,
            update=current is not None,
            src_path=src_path,
        )
        if spec is not None:
            body["requirements"] = spec
        if current is None:
            if override:
                # This server's listing may lag behind another instance's deploy of the same
                # name; the server then decides against its database (TabPy ignores the field).
                body["override"] = True
            response = self._connection.request(
                "POST", "endpoints", expect=(200, 201), json_body=body
            )
        else:
            response = self._connection.request(
                "PUT", f"endpoints/{quote_name(name)}", expect=(200,), json_body=body
            )
        if spec is not None and not _shows_requirements(response, name):
            raise DeploymentError(
                f"{_NO_ENVIRONMENTS} Endpoint {name} was deployed without them; deploy it "
                "again without requirements, or to a server that builds environments."
            )
        if not wait:
            return
        deployed = _reported_version(response, name, version)
        if spec is not None:
            wait_for_environment(self.get_status, name, deployed, self.deploy_timeout)
        else:
            wait_until_loaded(self.get_status, name, deployed, self.deploy_timeout)

    def remove(self, name: str) -> None:
        """``DELETE endpoints/<name>``; an unknown name raises ``NotFoundError``.

        A name longer than servers now accept (older ones created any length) is sent in
        the body of ``DELETE endpoints`` instead, as it may not fit in a URL.
        """
        if len(name) > MAX_NAME_LENGTH:
            self._connection.request(
                "DELETE", "endpoints", expect=(200, 204), json_body={"name": name}
            )
            return
        self._connection.request("DELETE", f"endpoints/{quote_name(name)}", expect=(200, 201, 204))

    def versions(self, name: str) -> list[dict[str, Any]]:
        """``GET endpoints/<name>/versions``: every version of ``name``, oldest first.

        Each entry has ``version``; ``artifact``, the SHA-256 of its pickled function, and
        ``size``, its length in bytes; ``created_at`` (Unix time); the ``description``,
        ``docstring`` and ``schema`` the endpoint had while that version was current (null
        if the server that recorded it did not keep them); and ``current``, true for the
        version served now. Pass a ``version`` to :meth:`rollback` to serve it again.

        Raises ``NotFoundError`` for an unknown name, and also against a TabPy 2.16 server,
        which keeps no history.
        """
        history: list[dict[str, Any]] = self._connection.get_json(
            f"endpoints/{quote_name(name)}/versions"
        )
        return history

    def rollback(self, name: str, version: int) -> int:
        """Serve an earlier ``version`` of endpoint ``name`` again; returns the new version.

        The server restores that version's function, description, docstring and schema
        under the next version number (rolling back from 3 to 1 makes version 4), so the
        history only grows and :meth:`versions` keeps listing every version. Like
        :meth:`deploy`, it returns once the server serves the restored function.

        Raises ``NotFoundError`` for an unknown name or version (or a TabPy 2.16 server,
        which cannot roll back), ``LoadFailedError`` if the restored function no longer
        loads (say, a library it needs was removed), or ``DeploymentTimeoutError``.
        """
        if not isinstance(version, int) or isinstance(version, bool):
            raise InvalidArgumentError(f"version must be a whole number, not {version!r}")
        response = self._connection.request(
            "POST",
            f"endpoints/{quote_name(name)}/rollback",
            expect=(200,),
            json_body={"version": version},
        )
        restored = _reported_version(response, name, 0)
        if restored:
            wait_until_loaded(self.get_status, name, restored, self.deploy_timeout)
        return restored

    def update_endpoint_info(
        self,
        name: str,
        description: str | None = None,
        schema: dict[str, Any] | None = None,
        is_public: bool | None = None,
    ) -> None:
        """Change an endpoint's description, schema or visibility without a new version."""
        if description is not None and not isinstance(description, str):
            raise InvalidEndpointInfoError("Type of description must be string")
        if schema is not None and not isinstance(schema, dict):
            raise InvalidEndpointInfoError("Type of schema must be dictionary")
        if is_public is not None and not isinstance(is_public, bool):
            raise InvalidEndpointInfoError("Type of is_public must be bool")
        current = self._endpoint_info(name)
        if current is None:
            raise EndpointNotFoundError(
                f"No endpoint with that name ({name}) exists "
                "Please select an existing endpoint to update"
            )
        body: dict[str, Any] = {}
        if description is not None:
            body["description"] = description
        # A TabPy 2.16 server resets schema and is_public when a PUT omits them, so the
        # current values are sent back unchanged; our server would keep them anyway.
        body["schema"] = schema if schema is not None else current.get("schema")
        body["is_public"] = is_public if is_public is not None else current.get("is_public", False)
        # TabPy 2.16 requires src_path on every PUT; with should_update_version false it only
        # re-copies the current version's folder, and our server ignores it.
        body["src_path"] = os.path.join(
            self._upload_destination(), "endpoints", name, str(current["version"])
        )
        body["should_update_version"] = False
        self._connection.request(
            "PUT", f"endpoints/{quote_name(name)}", expect=(200,), json_body=body
        )

    def _endpoint_info(self, name: str) -> dict[str, Any] | None:
        try:
            info: dict[str, Any] = self._connection.get_json(f"endpoints/{quote_name(name)}")
        except NotFoundError:
            return None
        return info

    def _upload(self, artifact: Artifact) -> bool:
        """Upload the pickle; ``False`` if the server has no upload route (TabPy 2.16)."""
        response = self._connection.request(
            "PUT",
            f"artifacts/{artifact.sha256}",
            expect=(200, 201, 404, 405),
            content=artifact.data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if response.status_code in (404, 405):
            return False
        logger.info("Uploaded %d bytes as artifact %s", len(artifact.data), artifact.sha256)
        return True

    def _upload_destination(self) -> str:
        path: str = self._connection.get_json("configurations/endpoint_upload_destination")["path"]
        return path

    def _write_to_shared_folder(self, name: str, version: int, artifact: Artifact) -> str:
        # Works only when this machine sees the server's upload folder (same host or shared
        # mount): TabPy 2.16 copies the folder from its own disk.
        src_path = os.path.join(self._upload_destination(), "endpoints", name, str(version))
        logger.info(
            "The server has no upload route (TabPy 2.16?): writing the function to %s", src_path
        )
        write_archive(src_path, artifact.data)
        return src_path


def _reported_version(response: httpx.Response, name: str, expected: int) -> int:
    """The version the server says it created, which is what ``/status`` will report."""
    try:
        version = response.json()[name]["version"]
    except (ValueError, KeyError, TypeError):
        return expected
    return version if isinstance(version, int) and not isinstance(version, bool) else expected


_NO_ENVIRONMENTS = (
    "This server cannot build per-endpoint environments (requirements=), for example a "
    "TabPy 2.16 server."
)


def _shows_requirements(response: httpx.Response, name: str) -> bool:
    """Whether the server's reply names the environment (a server without them ignores it)."""
    try:
        return "requirements" in response.json()[name]
    except (ValueError, KeyError, TypeError):
        return False
