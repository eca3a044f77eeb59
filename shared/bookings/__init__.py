"""Platform bookings and their write-through to Outlook."""
