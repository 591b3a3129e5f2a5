"""Security building blocks: password hashes and files, credential checks, JWT and TLS.

Modules, pure logic first:

* ``passwords``: TabPy's legacy PBKDF2 hash and our salted format;
* ``password_file``: parsing and atomically rewriting the password file;
* ``throttle`` and ``verification_cache``: per-client failure limits and the cache that makes
  repeated Basic logins cost microseconds;
* ``password_store`` and ``basic``: the live password file (reloads) and Basic verification;
* ``tokens``, ``jwks``, ``oauth`` and ``oauth_settings``: OAuth 2.0 bearer tokens;
* ``tls``: the HTTPS server context and its start-up checks.
"""
