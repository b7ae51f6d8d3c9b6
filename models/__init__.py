"""Domain, message and table models shared by every part of aisafe (imports nothing of ours)."""
