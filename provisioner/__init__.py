"""provisioner: identity provisioning from Informat to Active Directory and Entra ID."""

__version__ = "0.1.0"
