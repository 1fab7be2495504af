"""Reading training code: the static reader (reader/) and, after the layout move, subject facts."""
