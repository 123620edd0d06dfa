"""Simulators of the real core: a mesh of links, a shared radio channel, scenarios."""
