"""Stage 1 of the pipeline: scan a folder-per-class data set, groups, leak-free splits, cv folds, demo data (docs/architecture.md)."""
