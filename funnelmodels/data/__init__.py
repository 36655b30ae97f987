"""The data layer: the canonical schema, reading files, validation, the loaded dataset, synthetic data."""
