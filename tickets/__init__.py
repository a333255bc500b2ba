"""Tickets: residents' reports become tickets in a ticket system, and the tickets' progress goes back to the
groups. The report desk (desk.py) with its follow-up flow (followup.py), the durable outbox (outbox.py), the
messages owed to groups (notify.py), the merge rule (merge.py), staff corrections (corrections.py), the webhook
receiver (webhook.py), and the `open311` ticket backend plugin (open311.py). bot/app.py wires them.
"""
