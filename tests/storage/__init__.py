"""Tests of the storage package, one file per module or behaviour."""
