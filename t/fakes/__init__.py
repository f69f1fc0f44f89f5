"""Fake servers (Consul, Vault) for the storage suites; see each module."""
