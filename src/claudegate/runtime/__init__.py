"""What every way of running claudegate shares, whether behind the HTTP server (``claudegate.server``) or in
an application's own process (``claudegate.client``): the services opened at start-up (``services``), one
call's reading of its request (``call``, ``asgi``), the pass-through to the upstream (``proxy``), and the
Files and Message Batches routes, whose ownership rules the in-process client drives as the gateway does.

Nothing here imports ``claudegate.server``: an application using the in-process client loads no HTTP server.
"""
