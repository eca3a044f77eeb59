"""The ground every other package stands on: errors, settings, validation, untrusted input, addresses, CSV export."""
