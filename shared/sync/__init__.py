"""Outlook -> platform: the sync worker, its plan and its queue."""
