"""The daemon: the service's event loop, the control socket and its operations."""
