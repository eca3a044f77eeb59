"""Busy blocks and free slots, from Table Storage."""
