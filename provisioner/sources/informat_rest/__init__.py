"""Informat's OAuth2 REST APIs as a source (``source: informat_rest:``)."""
