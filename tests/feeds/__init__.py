"""Tests of the feeds package, one file per module or behaviour."""
