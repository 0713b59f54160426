"""Chat: conversations, context budgets."""
