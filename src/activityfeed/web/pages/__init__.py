"""Server-rendered pages (templates/ and static/ beside this module)."""
