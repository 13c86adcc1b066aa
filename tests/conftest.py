"""Puts ``tests/`` on ``sys.path`` (pytest's rootdir-conftest rule), so unit
and integration tests share helpers such as ``straced.py``."""
