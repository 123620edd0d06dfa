"""Shells on the host: config, the data dir, import and file writes, worker jobs, sd_notify."""
