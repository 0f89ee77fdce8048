"""The only package that speaks SQL: schema, queries, migrations and notification."""
