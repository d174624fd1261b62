"""factus package."""
