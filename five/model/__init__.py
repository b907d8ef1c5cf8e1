"""The math: networks, estimators, objectives, the four models, packed seeds."""
