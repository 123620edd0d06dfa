"""The village page: an aiohttp server in the daemon's loop, its JSON API, and the page."""
