"""The configuration: ``settings`` holds the typed, frozen settings; ``file`` reads and checks the YAML."""
