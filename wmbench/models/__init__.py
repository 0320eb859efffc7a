"""Built-in world models. Importing this package registers them."""

from wmbench.models import ardiffusion, ensemble, floors, polygrad, transformer  # noqa: F401
