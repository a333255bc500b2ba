"""Ingestion, the hybrid index, the answerer, citations and the evaluator."""
