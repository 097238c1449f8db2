"""A simulator of the Auth Center: issues end users' tokens and answers nginx's verify subrequest."""
