"""Study files -> specs -> cells: the first stage, pure and without I/O beyond reading the file."""
