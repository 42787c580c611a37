"""Public data for tests and pretraining: ``python -m export.data.fetch --out DATA_DIR``."""
