"""CPU benchmarks of the course (`make bench`): each module's `main()` prints figures measured in one run."""
