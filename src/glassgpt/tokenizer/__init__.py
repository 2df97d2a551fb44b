"""tokenizer stage of the glassgpt pipeline."""
