"""The management console (server-rendered pages at ``/``) and the HTTP API under ``/api/v1/``.

``app`` is the WSGI application ``reconciler.http`` mounts; ``api`` the JSON routes and
``openapi`` their document; ``pages`` the console, with ``sessions`` for
sign-in and CSRF; ``views`` shapes the status for both; ``backend`` is the one
module that reaches the engine. Who may do what is ``reconciler.core.access``.
"""
