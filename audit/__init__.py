"""Audit export, verification and reports (issue 4)."""
