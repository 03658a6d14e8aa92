"""Sample rooms for demos and tests, synthesised from plain-text scripts (see :mod:`samples.generate`)."""
