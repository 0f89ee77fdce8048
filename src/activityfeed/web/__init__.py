"""The HTTP layer: ``create_app(settings)`` builds the JSON API and the pages."""

from activityfeed.web.app import create_app

__all__ = ["create_app"]
