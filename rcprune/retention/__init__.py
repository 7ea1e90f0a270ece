"""Small-weight retention: which weights of a layer to keep so that its output changes least."""
