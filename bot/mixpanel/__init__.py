"""Mixpanel as an outside system: the Service Accounts API client, its models, and the project catalog."""
