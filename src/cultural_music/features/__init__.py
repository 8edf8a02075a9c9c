"""Stage 2: decode audio into clips, compute features, cache them; extraction jobs and the local runner (docs/architecture.md)."""
