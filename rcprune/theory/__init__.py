"""The constructions the proofs use: the NP-completeness reduction, tight families, bound verification."""
