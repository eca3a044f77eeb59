"""Connecting a building to Microsoft 365: the connect flows and the tokens."""
