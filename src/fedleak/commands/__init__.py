"""Sub-commands of the ``fedleak`` CLI, one module each (see :mod:`fedleak.cli`)."""
