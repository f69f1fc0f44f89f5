"""Fake third-party servers for the end-to-end suites (Consul, Vault, DNS provider APIs, an
ARI proxy in front of Pebble, a fault proxy in front of Pebble: fault_proxy.py); see each
module."""
