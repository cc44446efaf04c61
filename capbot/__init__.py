"""capbot: settings, command line and the composition root that wires the other packages together."""

__version__ = "0.1.0"
