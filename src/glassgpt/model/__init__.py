"""model stage of the glassgpt pipeline."""
