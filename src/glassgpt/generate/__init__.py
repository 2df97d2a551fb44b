"""generate stage of the glassgpt pipeline."""
