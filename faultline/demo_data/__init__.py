"""Generators of realistic demo data, with the ground truth kept for scoring."""
