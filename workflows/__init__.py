"""Temporal workflows: deterministic, no I/O. A proposal is a ProposalWorkflow; each review round a child."""
