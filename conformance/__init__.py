"""Differential conformance suite: the same bundle under pyoci, runc and crun, observed the same way.

`python -m conformance` runs every scenario (see scenarios.py) under each runtime and prints a table;
conformance/test_conformance.py runs them under pytest. README.md explains how to add a scenario."""
