"""The documented config file: every key and its default (`meshnode config --example`)."""

from __future__ import annotations

__all__ = ["EXAMPLE_CONFIG"]

EXAMPLE_CONFIG = """\
# meshnode configuration (TOML). Every key is optional; the values shown are the defaults.
# Location: --config FILE, else $MESHNODE_CONFIG, else under systemd
# $CONFIGURATION_DIRECTORY/meshnode.toml (normally /etc/meshnode/meshnode.toml),
# else $XDG_CONFIG_HOME/meshnode/meshnode.toml (~/.config/meshnode/meshnode.toml) when it
# exists, else /etc/meshnode/meshnode.toml when that exists (a box's operator then sees
# the service's node).
# Sizes are a number of bytes or a string such as "64MiB", "500MB" or "1GiB".
# `meshnode config --example` prints this file; `meshnode config` shows what is in force.

[node]
# Data directory (identity, network key, store). Empty: --data DIR, else $MESHNODE_DATA,
# else $STATE_DIRECTORY under systemd, else $XDG_DATA_HOME/meshnode
# (~/.local/share/meshnode). A relative path is taken from this file's directory.
data_dir = ""
# Largest content of one entry, in bytes (1..65536). Entries from others above it are refused.
max_content_bytes = 8192
# Unix socket of the running daemon, which `meshnode status`, `post` and the rest use. Empty:
# $RUNTIME_DIRECTORY/control.sock under systemd (/run/meshnode), else DATA_DIR/control.sock.
control_socket = ""
# Most feeds one peer may name that this node does not keep (0..1000000; about 100 bytes of
# memory each, per link). A peer that names more is dropped as misbehaving: raise it for a
# hub that replicates far more feeds than this box.
max_unknown_feeds = 10000
# Disk for what the node remembers of the peers it met, all together (so that meeting
# again costs a few bytes, not a whole clock). Past it, strangers are forgotten first,
# never a peer we follow; 0 remembers no peer.
peer_memory_cap_bytes = "64MiB"
# Worker processes that check signatures while a bundle, a drive or the benchmark is
# taken in (0..64). 0: one per core this process may use; 1: none, all on one thread.
verify_threads = 0

[store]
# When appends reach the disk: "always" (fsync every entry; safest, slowest on SD cards),
# "batch" (fsync every fsync_batch_entries entries; a power cut loses at most that many),
# or "never" (leave it to the OS). A killed process loses nothing in any mode.
fsync = "batch"
fsync_batch_entries = 1000
# Size at which the log starts a new segment file (64KiB .. 1TiB).
segment_bytes = "64MiB"

[policy]
# Feeds further than this many follow hops from us are not stored (0..6).
max_hops = 2
# Feeds this close (ours is 0, the ones we follow 1) are kept whole.
full_hops = 1
# Feeds between full_hops and max_hops keep only their latest N entries (N >= 1).
partial_entries = 100
# Byte cap per feed, for feeds at hop 1 or further; 0 means no cap.
feed_cap_bytes = 0
# Byte cap for the whole store; the least wanted feeds are cut first. 0 means no cap.
global_cap_bytes = 0

[lan]
# Address and port to listen on for peers over TCP ("[::]:7420" for IPv6 as well).
# `meshnode run --listen HOST:PORT` overrides it.
listen = "0.0.0.0:7420"
# Announce this node and find others of the same network by mDNS (_meshnode._tcp).
# `meshnode run --no-mdns` switches it off.
mdns = true
# Peers to dial always, for networks where multicast is blocked: "HOST:PORT", or
# "HOST:PORT@ID" to pin the peer's key (without it the key is learned on first contact).
# `meshnode run --peer HOST:PORT` adds one.
peers = []
# Seconds a new connection has to finish the secret handshake (slow Wi-Fi needs some).
handshake_timeout_s = 15.0
# A link that receives nothing for this long is closed; keepalives go every third of it.
idle_timeout_s = 90.0
# Most TCP connections at once, in and out; more are refused and logged.
max_connections = 64
# Share of max_connections kept for links we dial and for peers we follow or list in
# peers: peers that are neither, when they connect to us, never take these (0.0..1.0;
# 1.0: only those peers). A stranger's link that carried no entry for two minutes is
# closed when its room is needed.
reserved_share = 0.25
# Most handshakes in progress from one address (an IPv6 /64 counts as one), and most links
# from it of peers neither followed nor listed (those are not counted). Raise it when many
# boxes share one address.
max_connections_per_address = 8
# Redial a lost or unreachable peer after a delay that doubles from min to max (jittered).
reconnect_min_s = 1.0
reconnect_max_s = 300.0

[usb]
# Plugging in a USB drive syncs it when it has a meshnode/ folder (`meshnode usb init`).
# A drive whose filesystem label is this one gets the folder on first plug-in. Empty: none.
label = ""
# Most space a new drive's folder takes (`meshnode usb init --cap` overrides it).
cap_bytes = "1GiB"

[mailbox]
# Private messages cannot be read by the box, nor whom they are for, so it keeps every one
# it stores past the caps of its author's feed: for this many days from when it stored it
# (0: no longer than the caps allow), within max_bytes in all and max_bytes / author_share
# per author, the oldest released first. The store may go over [policy] global_cap_bytes
# by up to max_bytes for them. See SECURITY.md.
keep_days = 30
max_bytes = "64MiB"
author_share = 8

[web]
# The page that phones on the box's WiFi open in their browser, and its JSON API.
enabled = true
# Address and port it listens on ("127.0.0.1:8080": only this machine).
listen = "0.0.0.0:8080"
# The name the page and mDNS show for this box; empty: the host name.
box_name = ""
# HTTPS, for communities that install their own certificate authority on their phones:
# a PEM certificate (chain) for the box's name and its unencrypted PEM key, both or
# neither; relative paths are taken from this file's folder. Empty: plain HTTP.
tls_cert = ""
tls_key = ""
# The operator's poster (the page's operator section, or `meshnode web qr`): a QR code
# that joins the box's WiFi, with the name and password written out. The network's name
# (1 to 32 bytes); empty: the poster has no WiFi code.
wifi_ssid = ""
# Its WPA passphrase (8 to 63 printable ASCII characters); empty: an open network. It is
# printed on the poster and shown to the operator, so keep this file unreadable to others.
wifi_password = ""
# The address on the poster and in its QR code, such as "http://10.42.0.1/". Empty:
# http://HOSTNAME.local/ with the port the page is served on (https with tls_cert).
page_url = ""

# Serial cables and LoRa radios: one [[radio]] table each (none by default). Drivers:
# "serial" (a plain cable between two boxes), "kiss" (KISS TNCs and RNode), "e22" (Ebyte
# E22/E32, Waveshare SX1262 HAT, transparent mode), "rylr" (REYAX RYLR896/998). See
# firmware-notes/ for each radio's settings. Regions: "EU868" (868.0-868.6 MHz, 1% per
# hour), "EU868_869_5" (869.4-869.65 MHz, 10% per hour), "US915" (under 400 ms per frame).
# [[radio]]
# name = "lora"
# driver = "kiss"
# port = "/dev/serial/by-id/usb-..."   # or /dev/serial0, or a pyserial URL
# baud = 115200
# region = "EU868_869_5"
# frequency_hz = 869525000
# bandwidth_hz = 125000
# spreading_factor = 9
# coding_rate = 5                     # 5..8 for 4/5..4/8
# tx_power_dbm = 14
# control_share = 0.10                # beacons and wants stay under this share of airtime
"""
