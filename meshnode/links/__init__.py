"""Shells that move frames: TCP, serial ports, radios, and mDNS discovery of TCP peers."""
