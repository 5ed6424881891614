"""Billing: one invoice number per folder, sent to Wedof once."""
