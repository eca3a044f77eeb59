"""The go-live check (issue 14): prove a building's integration end to end, explain every failure
with its fix, and leave nothing behind. model (steps, explanations, wire shapes), store (the
`checks` table), steps (one resource's steps), runner (start, run, read), sweeper (dead runs)."""
