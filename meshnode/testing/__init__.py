"""Test doubles shipped with the package: the LoRa channel emulator, fake modems, shs1."""
