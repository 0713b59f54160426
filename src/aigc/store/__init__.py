"""Persistence for the web app: SQLAlchemy models, the database (SQLite or PostgreSQL), search."""

from aigc.store.database import Database
from aigc.store.models import Base, Conversation, Feedback, Message, StoredResponse, UserTemplate

__all__ = ["Base", "Conversation", "Database", "Feedback", "Message", "StoredResponse", "UserTemplate"]
