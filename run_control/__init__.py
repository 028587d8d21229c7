"""What a command-line run needs around its work: exit codes and one-line user errors, the one-run
lock of a pipeline's output dir, and the recovery of a run that was killed."""
