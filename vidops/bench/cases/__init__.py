"""One module per op: `cases(device, quick, options=None) -> list[Case]` (see ../registry.py)."""
