"""hack/bench's Python side: statistics (stats), moat's structured phases
(phases), syscall counts (syscounts) and the markdown report (render).
Measuring is hack/bench (bash); nothing here runs a container."""
