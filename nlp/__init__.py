"""Language: the intent classifier, extraction of place, urgency and title, training data, semantic vectors."""
