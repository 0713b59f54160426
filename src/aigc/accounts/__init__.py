"""Accounts: users with roles, their API keys, web login sessions, and per-user limits."""

from aigc.accounts.principal import Principal
from aigc.accounts.users import AccountError, UserStore

__all__ = ["AccountError", "Principal", "UserStore"]
