"""Git servers for the credential tests (see tests/gitservers.py)."""

from tests.gitservers import git_http, git_ssh

__all__ = ["git_http", "git_ssh"]
