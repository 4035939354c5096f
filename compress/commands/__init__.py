"""Sub-commands of the ``compress`` CLI, one module each (see :mod:`compress.cli`)."""
