"""Targets: directories the plan is applied to (Active Directory now, Entra ID next)."""
