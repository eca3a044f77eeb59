"""Check-ins and no-show releases (issue 15): model (the attendance record, its table), and the
check-in and release services built on it."""
