"""Source readers: they turn a school administration system into plain records."""
