"""An app module that can be found but not imported: the worker exits 4 (APP_LOAD_ERROR)."""

raise RuntimeError("brokenapp refuses to import")
