"""The HTTP surface's own parts: who is calling, the OpenAPI description, health."""
