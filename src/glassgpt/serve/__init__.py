"""serve: glassgpt over HTTP (the glass page's API lives in `glass`)."""
