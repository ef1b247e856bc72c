"""Optional per-library fast paths, each module imported only on first use."""
