"""Compare and arena: one prompt to two models side by side, blind battles with votes, and a
leaderboard computed from the votes (ratings.py)."""
