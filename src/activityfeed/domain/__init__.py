"""Pure rules of the activity feed: no I/O, no SQL, no web."""
