"""API plumbing of the job engine: bearer tokens and JSON errors (the API itself is assembled by ksg_web.api)."""
