"""OpenAPI operations per API surface (collected by shared/openapi.py)."""
