"""Test doubles: a local Informat-compatible ``wsInformat.asmx`` server and its synthetic data."""
