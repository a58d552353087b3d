"""The desired state's source: the Git mirror, its credentials and signatures (the only pygit2 user)."""
