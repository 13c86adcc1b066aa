"""fastwsgi: a pre-fork WSGI HTTP server with a compiled hot path.

The compiled core (``_parser``, ``_response``, ``_conn``, ``_selector``) parses requests,
frames responses and moves bytes; everything that decides *when* and *whether*
(arbiter, worker loops, configuration, logging) is plain Python.
"""

__version__ = "0.1.0"
SERVER_SOFTWARE = f"fastwsgi/{__version__}"
