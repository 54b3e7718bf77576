"""Reference models built from vidops layers (spec section 7)."""
