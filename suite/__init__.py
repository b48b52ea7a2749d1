"""sae-bench suite: the declarative side (specs, grid, store, reports, gates, CLI)."""
