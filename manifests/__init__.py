"""The built-in family manifests (YAML data, not code). A package only so that the wheel ships
them; zoo.config.manifest finds them beside the installed `zoo` package, without importing this."""
