"""Every camelCase name of the SDK (Cloudflare's, as Python Workers see the
JavaScript API) also has its snake_case spelling: ``idFromName`` and
``id_from_name`` are the same method."""

import re


def snake_case(name):
    return re.sub(r"(?<=[a-z0-9])([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def with_snake_case(cls):
    """Adds a snake_case alias for each camelCase attribute ``cls`` defines."""
    for name, value in list(vars(cls).items()):
        alias = snake_case(name)
        if alias != name and not name.startswith("_") and alias not in vars(cls):
            setattr(cls, alias, value)
    return cls
