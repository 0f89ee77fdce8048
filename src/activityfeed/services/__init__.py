"""Use cases. Each runs inside the caller's transaction (a ``Tx``) and never commits.

Access checks live here, one per kind of thing (``access_workspace``, ``access_event``,
``access_api_key``): each raises the same ``NotFound`` for what is missing and what
belongs to someone else.
"""
