"""experiments stage of the glassgpt pipeline."""
