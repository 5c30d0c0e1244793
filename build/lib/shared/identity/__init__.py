"""identity: registered users, owned by the api function."""
