"""Telling people what a night did: a webhook (Teams, Slack, JSON), e-mail and a heartbeat.

``provisioner run`` makes a :class:`NightReport` and calls :func:`notify` and
:func:`ping_heartbeat`; :func:`expiry_warnings` fills its warnings. :func:`send_test` sends a
test message (for a command that checks the setup)."""

from provisioner.notify.deliver import notify, ping_heartbeat, send_test
from provisioner.notify.expiry import expiry_warnings
from provisioner.notify.night import NightReport, SchoolNight
from provisioner.notify.settings import NotifyConfig

__all__ = [
    "NightReport",
    "NotifyConfig",
    "SchoolNight",
    "expiry_warnings",
    "notify",
    "ping_heartbeat",
    "send_test",
]
