"""The micro-benchmark harness behind `python -m vidops.bench`."""
