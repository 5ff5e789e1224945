"""swiftlite's own middleware, one module each (entry points in pyproject.toml)."""
