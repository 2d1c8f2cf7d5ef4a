"""Connectors: one small class per vendor behind the narrow protocol in :mod:`etl.connectors.base`."""
