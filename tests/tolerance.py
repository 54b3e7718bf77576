"""The tests' accuracy rule: vidops._tolerance (shipped in the package, shared with
`python -m vidops.selftest`)."""
from vidops._tolerance import assert_close_to_reference, compare, eps  # noqa: F401
