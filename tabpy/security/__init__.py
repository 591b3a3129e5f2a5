"""Who is calling, and the building blocks that decide it: passwords, tokens, limits, TLS.

Transport-neutral: nothing here imports ``tabpy.server`` (HTTP) or ``tabpy.arrow`` (Flight);
both call :class:`~tabpy.security.authenticator.Authenticator` and map its refusals to their
own wire format.

Modules, pure logic first:

* ``principal``: the :class:`~tabpy.security.principal.Principal` authentication produces;
* ``authorization``: reading the ``Authorization`` value (Basic, Bearer);
* ``log_text``: client-supplied values made safe and bounded for log lines;
* ``client_address``: the client's address, believing forwarded headers only from trusted
  proxies;
* ``passwords``: TabPy's legacy PBKDF2 hash and our salted format;
* ``password_file``: parsing and atomically rewriting the password file;
* ``throttle`` and ``verification_cache``: failed-login limits per address and user name, and
  the cache that makes repeated Basic logins cost microseconds;
* ``password_store`` and ``basic``: the live password file (reloads) and Basic verification;
* ``tokens``, ``jwks``, ``oauth`` and ``oauth_settings``: OAuth 2.0 bearer tokens;
* ``authenticator``: the one place that turns credentials into a principal;
* ``roles`` and ``access``: who may do what (``TABPY_AUTHZ``): the roles, how principals are
  named, what each route needs, and the decisions, over an in-memory copy of the registry's
  grants and endpoint owners and callers;
* ``tls``: the HTTPS server context and its start-up checks.
"""
