"""Training networks on stored data: what distillation and evaluation both build on."""
