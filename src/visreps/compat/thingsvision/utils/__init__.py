"""``thingsvision.utils``: :mod:`.data` (images and batches) and :mod:`.storing` (feature files)."""
