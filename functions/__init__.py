"""Lambda handlers, one package per function (CodeUri)."""
