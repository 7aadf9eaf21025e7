"""The one error type of the configuration."""

class ConfigError(ValueError):
    """A configuration value or key is wrong; the message says which and where."""
