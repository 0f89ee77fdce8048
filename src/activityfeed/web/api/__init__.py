"""JSON routes, one module per resource. Handlers parse, call one service, serialise."""
