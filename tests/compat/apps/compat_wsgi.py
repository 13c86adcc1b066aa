"""``compat_wsgi:app``: the compat site (``site.ini``) for an APP argument."""

import os

from paste.deploy import loadapp

INI = os.path.join(os.path.dirname(os.path.abspath(__file__)), "site.ini")
app = loadapp("config:" + INI)
