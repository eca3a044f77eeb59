"""Busy blocks and free slots, from Table Storage.

busy     the busy table: every reason a resource is unavailable; claims make double booking
         impossible by construction (bookings claim, sync mirrors Outlook)
service  the availability route's answer (busy blocks, free runs), and the query-time parsers
"""
