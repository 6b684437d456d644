"""hypothesis never writes to the home directory: no example database at all."""

from hypothesis import settings

settings.register_profile("ddlib-fuzz", database=None, deadline=None, derandomize=True)
settings.load_profile("ddlib-fuzz")
