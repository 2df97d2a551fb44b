"""train stage of the glassgpt pipeline."""
