"""WSGI apps the integration tests serve through a real fastwsgi process."""
