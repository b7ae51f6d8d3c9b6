"""The embedded stack for development, demos and tests: real Temporal dev server, SMTP sink, worker, web."""
