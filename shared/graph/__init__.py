"""Talking to Microsoft Graph: the client, the mapped-calendar guard, permissions, audit."""
