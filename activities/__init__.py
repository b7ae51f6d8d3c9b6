"""Side effects: the decisions ledger, document versions and email. Workflows call these; nothing else may."""
