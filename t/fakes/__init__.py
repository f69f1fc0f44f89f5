<<<<<<< HEAD
"""Fake servers (Consul, Vault) for the storage suites; see each module."""
=======
"""Fake third-party services for the end-to-end suites."""
>>>>>>> dns
