# _selector has no C-level API: its three functions are called from Python
# (workers/gthread.py), once per hand-off. This file exists so that every
# extension has its .pxd, as setup.py's docstring says.
