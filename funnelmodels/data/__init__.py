"""The data layer: canonical schema, loading with column mapping, validation, synthetic data."""
