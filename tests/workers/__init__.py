"""Scripts that tests start in other processes (under torchrun); not collected as tests."""
