"""Tests of the pipeline package, one file per module or behaviour."""
