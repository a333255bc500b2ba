"""One module per kind of message; the intent classifier and the extraction of service, place and urgency."""
