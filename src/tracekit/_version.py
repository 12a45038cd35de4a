"""tracekit's version, in a module of its own: hatch reads it from this file when
building (`[tool.hatch.version]` in pyproject.toml), and code that needs it (the
resource attributes, the HTTP user agent) imports it without the public API."""

__version__ = "0.1.0"
