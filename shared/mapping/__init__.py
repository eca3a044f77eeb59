"""Which Outlook calendar a resource is: discovery and mapping."""
