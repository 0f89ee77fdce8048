"""Activity Feed: one place to see and triage everything that happens in a workspace."""

__version__ = "0.1.0"
