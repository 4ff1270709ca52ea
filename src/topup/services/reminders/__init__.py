"""Reminders (README "Reminders"): the scheduler that queues them (``scheduling``), the sender
that delivers them on each channel (``sending``), what they say (``texts``), and what a
subscriber chooses (``choices``: preferences, unsubscribing, the app's push subscription)."""
