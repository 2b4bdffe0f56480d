"""Provider interfaces (:mod:`.base`) and one module per implementation."""
