"""The built-in family manifests (YAML data, not code), shipped inside the package so that an
installed Model Zoo finds them from any folder (zoo.config.manifest reads them through
importlib.resources)."""
