"""The Python client of the server, at TabPy 2.16's import paths.

Public modules: ``client`` (``Client``), ``schema`` (``generate_schema``), ``errors`` (every
exception; ``ResponseError`` is also importable from ``rest``), ``endpoints`` (what
``Client.get_endpoints`` returns), and ``query_object`` / ``custom_query_object`` (the classes
deployed pickles are made of). This file imports nothing, so a server process that unpickles a
deployed object does not load the HTTP client.
"""
