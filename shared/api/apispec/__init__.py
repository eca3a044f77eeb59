"""OpenAPI operations per API surface (collected by shared/api/openapi.py)."""
