"""inspect stage of the glassgpt pipeline."""
