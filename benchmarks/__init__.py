"""Side-by-side speed and quality figures: `make bench` (python -m benchmarks)."""
