"""The embedded Fashion-scenes benchmark: real Fashion-MNIST photos composed into scenes with
exact masks, carrying both cases (a new class; a class split) as configuration."""
