"""Tests of the workers package, one file per module or behaviour."""
