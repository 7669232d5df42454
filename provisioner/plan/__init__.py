"""The plan: what would change in a directory and why, as data to show, save and apply."""
