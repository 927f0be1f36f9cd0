"""Local stand-ins for the services the worker needs, for `campaign-worker dev`."""
