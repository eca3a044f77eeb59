"""Platform bookings and their write-through to Outlook.

model    a booking, its states, and the validation of what a request asks for (pure)
store    the `bookings` table: the booking, its Idempotency-Key row, its by-start copy
views    the wire form the bookings routes answer
outlook  the booking's Outlook event: its body, the Graph writes and checks, failure classes
outbox   the queue that brings an event in line with its booking later
service  create, read, list, update, cancel, and the outbox worker (collaborators: BookingDeps)
"""
