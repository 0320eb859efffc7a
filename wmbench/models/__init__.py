"""Built-in world models. Importing this package registers them."""

from wmbench.models import ensemble, polygrad  # noqa: F401
