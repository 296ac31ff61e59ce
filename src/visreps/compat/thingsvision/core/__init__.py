"""``thingsvision.core``: :mod:`.extraction`, :mod:`.rsa` and :mod:`.cka`."""
