"""HTTP handlers. Each module owns its routes; ``analysisstore.app`` joins them."""
