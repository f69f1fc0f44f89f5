"""Fake third-party servers for the end-to-end suites (Consul, Vault, DNS provider APIs and a
webhook on httpfake.FakeServer; an ARI proxy and a fault proxy in front of Pebble on
pebble_proxy.PebbleProxy); see each module."""
