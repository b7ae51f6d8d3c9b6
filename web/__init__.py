"""The web app: delegates' action links, the dashboard, and (in dev mode) the mailbox."""
