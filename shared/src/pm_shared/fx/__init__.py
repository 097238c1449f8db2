"""Currency exchange (docs/fx.md): rates, pricing and quotes."""
