"""Telling people what a night did: a webhook (Teams, Slack, JSON), e-mail and a heartbeat."""
