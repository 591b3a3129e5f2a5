"""The HTTP side: the ASGI application, its routes and request handling."""
