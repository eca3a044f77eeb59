"""Outgoing webhooks (issue 16): endpoints per building, Standard Webhooks signatures, delivery
from a queue with retries. See docs/DESIGN.md "Outgoing webhooks (issue 16)"."""
