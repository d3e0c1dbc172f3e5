"""FACE: the pytest plugin (``plugin.py`` is wiring only), the session, and how a run ends."""
