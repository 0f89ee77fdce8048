"""The ``activityfeed`` command line, one module per command group."""
