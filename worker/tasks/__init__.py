"""The worker's tasks, one module per concern: events (webhook inbox), sync, push (BDC → Wedof), maintenance."""
