"""Request handlers, one module per service: root, sessions, execute, files."""
